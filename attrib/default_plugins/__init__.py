"""Built-in plugins, registered exactly like outside ones."""
