"""attrib-c2pa on manifests the tests sign themselves (throw-away CA + ES256 key, offline)."""

import datetime
import io
import json
from importlib.metadata import PackageNotFoundError, version

import attrib_c2pa
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from attrib.cli import build_cli
from attrib.detectors import DetectorImage
from attrib.plugins import make_plugin_manager

c2pa = pytest.importorskip("c2pa")
crypto = pytest.importorskip("cryptography")

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
PIXELS = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRIB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ATTRIB_LOAD_PLUGINS", "")
    for var in ("ATTRIB_C2PA_FETCH_REMOTE", "ATTRIB_C2PA_TRUST_ANCHORS"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def pki():
    """A CA and an end-entity ES256 signing certificate, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "attrib tests")])

    def usage(ca):
        return x509.KeyUsage(True, False, False, False, False, ca, ca, False, False)

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    base = lambda subject, issuer, public: (  # noqa: E731
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    ca = (
        base(name("attrib test CA"), name("attrib test CA"), ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage(True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        base(name("attrib test signer"), ca.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    return {
        "chain": pem(leaf) + pem(ca),
        "ca": pem(ca),
        "key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    }


def manifest(source_type, agent=None, generator="attrib-test-generator"):
    action = {"action": "c2pa.created", "digitalSourceType": IPTC + source_type}
    if agent:
        action["softwareAgent"] = {"name": agent}
    return {
        "claim_generator_info": [{"name": generator, "version": "1.0"}],
        "title": "made by the tests",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}}],
    }


def encoded(fmt, **kw):
    buf = io.BytesIO()
    Image.fromarray(PIXELS).save(buf, format=fmt, **kw)
    return buf.getvalue()


def sign(pki, spec, fmt="PNG", remote_url=None, **save):
    mime = {"PNG": "image/png", "JPEG": "image/jpeg"}[fmt]
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg=b"es256", sign_cert=pki["chain"], private_key=pki["key"], ta_url=None))
    out = io.BytesIO()
    with c2pa.Builder(spec) as builder:
        if remote_url:
            builder.set_no_embed()
            builder.set_remote_url(remote_url)
        manifest_bytes = builder.sign(signer, mime, io.BytesIO(encoded(fmt, **save)), out)
    return out.getvalue(), manifest_bytes


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def detect(path):
    return attrib_c2pa.C2PADetector().detect(DetectorImage(path=path))


def test_ai_generation_claim_is_synthetic_with_a_hint(tmp_path, pki):
    data, _ = sign(pki, manifest("trainedAlgorithmicMedia", agent="sdxl-turbo"))
    ev = detect(write(tmp_path, "ai.png", data))
    assert ev.verdict == "synthetic" and ev.source_hint == "sdxl-turbo"
    assert ev.score == pytest.approx(0.99 * 0.9)
    [m] = ev.details["manifests"]
    assert m["claim_generator"] == "attrib-test-generator" and m["signature"]["common_name"] == "attrib test signer"
    assert m["actions"] == [
        {"action": "c2pa.created", "digitalSourceType": IPTC + "trainedAlgorithmicMedia", "softwareAgent": "sdxl-turbo"}
    ]
    validation = ev.details["validation"]
    assert validation["state"] == "Valid"  # sound signature, signer on no trust list: said, not hidden
    assert [f["code"] for f in validation["failures"]] == ["signingCredential.untrusted"]
    assert "signingCredential.untrusted" in ev.details["summary"]


def test_claim_generator_is_the_hint_without_an_agent(tmp_path, pki):
    data, _ = sign(pki, manifest("compositeWithTrainedAlgorithmicMedia", generator="Acme Image Studio"))
    ev = detect(write(tmp_path, "composite.png", data))
    assert ev.verdict == "synthetic" and ev.source_hint == "Acme Image Studio" and ev.score == pytest.approx(0.9 * 0.9)


def test_trust_anchors_make_it_trusted(tmp_path, pki, monkeypatch):
    data, _ = sign(pki, manifest("trainedAlgorithmicMedia", agent="sdxl-turbo"))
    anchors = write(tmp_path, "anchors.pem", pki["ca"])
    monkeypatch.setenv("ATTRIB_C2PA_TRUST_ANCHORS", str(anchors))
    ev = detect(write(tmp_path, "ai.png", data))
    assert ev.details["validation"]["state"] == "Trusted" and ev.details["validation"]["failures"] == []
    assert ev.score == pytest.approx(0.99)


def test_altered_file_is_invalid_and_reported(tmp_path, pki):
    data, _ = sign(pki, manifest("trainedAlgorithmicMedia", agent="sdxl-turbo"), fmt="JPEG", comment=b"hello world")
    altered = data.replace(b"hello world", b"jello world")  # still a valid JPEG, no longer the signed bytes
    ev = detect(write(tmp_path, "altered.jpg", altered))
    assert ev.details["validation"]["state"] == "Invalid"
    assert "assertion.dataHash.mismatch" in [f["code"] for f in ev.details["validation"]["failures"]]
    assert ev.verdict == "synthetic" and ev.score == pytest.approx(0.99 * 0.7)
    assert "assertion.dataHash.mismatch" in ev.details["summary"]


def test_capture_claim_is_real_and_other_claims_undetermined(tmp_path, pki):
    data, _ = sign(pki, manifest("digitalCapture", generator="camera-app"))
    ev = detect(write(tmp_path, "photo.png", data))
    assert ev.verdict == "real" and ev.score == 0.2 and ev.source_hint is None
    data, _ = sign(pki, manifest("digitalCreation", generator="paint-app"))
    ev = detect(write(tmp_path, "drawing.png", data))
    assert ev.verdict == "undetermined" and ev.score is None and "no AI-generation claim (paint-app)" in ev.details["summary"]


def test_no_manifest_and_no_bytes(tmp_path):
    ev = detect(write(tmp_path, "plain.png", encoded("PNG")))
    assert ev.verdict == "undetermined" and ev.score is None and ev.details["reason"] == "no C2PA manifest"
    ev = attrib_c2pa.C2PADetector().detect(DetectorImage(PIXELS))
    assert "no file bytes" in ev.details["reason"]


def test_remote_manifest_is_not_fetched_unless_asked(tmp_path, pki, monkeypatch):
    url = "http://127.0.0.1:9/manifests/ai.c2pa"  # nothing listens there: a fetch would fail
    data, manifest_bytes = sign(pki, manifest("trainedAlgorithmicMedia", agent="sdxl-turbo"), remote_url=url)
    path = write(tmp_path, "remote.png", data)
    ev = detect(path)
    assert ev.verdict == "undetermined" and ev.details["remote_url"] == url and ev.details["fetched"] is False
    assert "not fetched" in ev.details["summary"]
    monkeypatch.setenv("ATTRIB_C2PA_FETCH_REMOTE", "1")
    ev = detect(path)
    assert ev.details["fetched"] is True and ev.details["fetch_error"] and "could not be fetched" in ev.details["summary"]
    monkeypatch.delenv("ATTRIB_C2PA_FETCH_REMOTE")
    write(tmp_path, "remote.c2pa", manifest_bytes)  # a sidecar beside the file is read instead
    ev = detect(path)
    assert ev.verdict == "synthetic" and ev.source_hint == "sdxl-turbo" and ev.details["sidecar"] is True


def test_cli_detect_and_c2pa_command(tmp_path, pki):
    pm = make_plugin_manager()
    pm.register(attrib_c2pa, name="c2pa")
    cli = build_cli(pm)
    ai = write(tmp_path, "ai.png", sign(pki, manifest("trainedAlgorithmicMedia", agent="sdxl-turbo"))[0])
    plain = write(tmp_path, "plain.png", encoded("PNG"))
    r = CliRunner().invoke(cli, ["detect", "-d", "c2pa", str(ai), str(plain)], catch_exceptions=False)
    assert r.exit_code == 0 and "source: sdxl-turbo" in r.output and "no C2PA manifest" in r.output
    print(r.output)
    r = CliRunner().invoke(cli, ["c2pa", str(ai)], catch_exceptions=False)
    store = json.loads(r.output)
    assert r.exit_code == 0 and store["validation_state"] == "Valid" and store["active_manifest"] in store["manifests"]
    r = CliRunner().invoke(cli, ["c2pa", str(plain)])
    assert r.exit_code == 1 and "no C2PA manifest" in r.output
    bad = write(tmp_path, "bad.png", b"not an image")
    r = CliRunner().invoke(cli, ["c2pa", str(bad)])
    assert r.exit_code == 1 and "Traceback" not in r.output


def test_installed_entry_point_is_listed(monkeypatch):
    try:
        installed = version("attrib-c2pa")
    except PackageNotFoundError:
        pytest.skip("attrib-c2pa is not pip-installed here")
    monkeypatch.setenv("ATTRIB_LOAD_PLUGINS", "attrib-c2pa")
    r = CliRunner().invoke(build_cli(), ["plugins", "--json"], catch_exceptions=False)
    [row] = [p for p in json.loads(r.output) if p["distribution"] == "attrib-c2pa"]
    assert row["version"] == installed and row["error"] is None
    assert row["registers"] == {"commands": ["c2pa"], "detectors": ["c2pa"]}


def test_verdict_on_signed_manifests(tmp_path, pki, monkeypatch):
    """identify's verdict (attrib.verdict) over what this detector says of manifests signed here."""
    verdict_mod = pytest.importorskip("attrib.verdict")
    judge = verdict_mod.Judge(verdict_mod.builtin_rules())
    unknown = {"source": None, "score": 0.2, "threshold": 0.6, "margin": 0.1, "candidates": [{"source": "sdxl", "score": 0.2}]}
    sdxl = {"source": "midjourney6", "score": 0.9, "threshold": 0.6, "margin": 0.3, "candidates": [{"source": "midjourney6", "score": 0.9}]}
    ai = write(tmp_path, "ai.png", sign(pki, manifest("trainedAlgorithmicMedia", agent="sdxl-turbo"))[0])

    def verdict(path, decision):
        return judge(decision, [detect(path).to_dict()])

    v = verdict(ai, unknown)  # signer on no trust list: forgeable, decides while nothing contradicts it
    assert (v["label"], v["source"]) == ("ai-generated", "sdxl-turbo") and v["basis"][0]["forgeable"]
    v = verdict(ai, sdxl)  # ... and gives way to a confident fingerprint, reported
    assert (v["label"], v["source"]) == ("ai-generated", None) and v["conflicts"][0]["rule"] == "fingerprint"
    monkeypatch.setenv("ATTRIB_C2PA_TRUST_ANCHORS", str(write(tmp_path, "anchors.pem", pki["ca"])))
    v = verdict(ai, sdxl)  # trusted: the claim names the tool, the fingerprint's dissent is a conflict
    assert (v["label"], v["source"]) == ("ai-generated", "sdxl-turbo") and not v["basis"][0]["forgeable"]
    assert v["conflicts"][0]["source"] == "midjourney6"
    photo = write(tmp_path, "photo.png", sign(pki, manifest("digitalCapture", generator="camera-app"))[0])
    assert verdict(photo, unknown)["label"] == "camera"
    monkeypatch.delenv("ATTRIB_C2PA_TRUST_ANCHORS")
    data, _ = sign(pki, manifest("trainedAlgorithmicMedia", agent="sdxl-turbo"), fmt="JPEG", comment=b"hello world")
    altered = write(tmp_path, "altered.jpg", data.replace(b"hello world", b"jello world"))
    v = verdict(altered, unknown)  # a manifest that does not validate: reported, not relied on
    assert v["label"] == "undetermined" and not v["basis"][0]["sure"] and "not relied on" in v["basis"][0]["reason"]
    stripped = write(tmp_path, "stripped.png", encoded("PNG"))  # no manifest: the fingerprint decides
    v = verdict(stripped, sdxl)
    assert (v["label"], v["source"], v["conflicts"]) == ("ai-generated", "midjourney6", [])
