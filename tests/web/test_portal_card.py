"""The digital card: QR code and Code 128 barcode as inline SVG with the readable number,
the full-screen view for the till, the PNG card image, and the Apple Wallet pass signed
with a certificate made in the test."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from PIL import Image

from tests import factories as f
from tests.support.portal import signed_in
from treu.api.app import create_app
from treu.config import Settings
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.members import card
from treu.web.render import LANG_COOKIE


def _client(db: Database, **settings: object) -> TestClient:
    web = TestClient(create_app(Settings(database_url=db.url, **settings), database=db))  # type: ignore[arg-type]
    web.cookies.set(LANG_COOKIE, "de")
    return web


def test_the_card_page_shows_both_codes_and_the_number(db: Database) -> None:
    prog = f.programme(db)
    who = f.member(db, prog)
    web = signed_in(_client(db), db, who)
    page = web.get("/portal/card")
    assert page.status_code == 200
    html = page.text
    qr = re.search(r'data-testid="card-qr"[^>]*>(<svg.*?</svg>)', html, re.S)
    assert qr is not None
    assert "<path" in qr.group(1)
    assert 'data-testid="card-barcode"' in html
    assert html.count("<rect") > 20  # the bars
    assert card.grouped(who.card_number) in html
    assert 'href="/portal/card.png"' in html
    assert "card.pkpass" not in html  # no certificate, no wallet link
    assert "style=" not in html  # the CSP forbids inline styles
    full = web.get("/portal/card/full")
    assert full.status_code == 200
    assert 'data-testid="card-qr"' in full.text
    assert "<nav" not in full.text  # only the codes
    assert "<script" not in full.text
    assert web.get("/portal/card.pkpass").status_code == 404


def test_the_barcode_is_code_128_of_the_card_number() -> None:
    modules = card.code128_modules("4000123456789")
    assert modules.startswith("11010011100")  # START C
    assert modules.endswith("1100011101011")  # STOP
    svg = card.code128_svg("4000123456789", title="Karte")
    bars = sum(int(w) for w in re.findall(r'<rect x="\d+" y="0" width="(\d+)" height="40"/>', svg))
    assert bars == modules.count("1")


def test_the_png_card_decodes_with_the_cards_size(db: Database) -> None:
    prog = f.programme(db, name="Bäckerei Korn")
    who = f.member(db, prog, first_name="Ana", last_name="Lima")
    answer = signed_in(_client(db), db, who).get("/portal/card.png")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    assert "attachment" in answer.headers["content-disposition"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    image = Image.open(io.BytesIO(answer.content))
    image.load()
    assert image.format == "PNG"
    assert image.size == card.CARD_SIZE
    grey = image.convert("L")
    histogram = grey.histogram()
    assert histogram[0] > 10_000  # black codes
    assert histogram[255] > 100_000  # on white


def _certificate(folder: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Pass Type ID: pass.test.treu")])
    now = utc_now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "pass.pem", folder / "pass.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass-word"),
        )
    )
    return cert_path, key_path


def test_a_signed_wallet_pass_with_a_configured_certificate(db: Database, tmp_path: Path) -> None:
    cert_path, key_path = _certificate(tmp_path)
    prog = f.programme(db)
    who = f.member(db, prog, first_name="Ana")
    f.ingest(db, f.purchase_payload(prog, who, amount_minor=2_500))
    web = signed_in(
        _client(
            db,
            wallet_cert=cert_path,
            wallet_key=key_path,
            wallet_key_password="pass-word",
            wallet_pass_type_id="pass.test.treu",
            wallet_team_id="TEAM123456",
        ),
        db,
        who,
    )
    assert 'href="/portal/card.pkpass"' in web.get("/portal/card").text
    answer = web.get("/portal/card.pkpass")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/vnd.apple.pkpass"
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    names = set(archive.namelist())
    assert {"pass.json", "manifest.json", "signature", "icon.png"} <= names
    document = json.loads(archive.read("pass.json"))
    assert document["passTypeIdentifier"] == "pass.test.treu"
    assert document["teamIdentifier"] == "TEAM123456"
    assert document["barcodes"][0]["message"] == who.card_number
    assert document["storeCard"]["primaryFields"][0]["value"] == 25
    manifest = json.loads(archive.read("manifest.json"))
    for name, digest in manifest.items():
        assert hashlib.sha1(archive.read(name), usedforsecurity=False).hexdigest() == digest
    assert set(manifest) == names - {"manifest.json", "signature"}
    signature = archive.read("signature")
    [signer] = pkcs7.load_der_pkcs7_certificates(signature)
    assert signer.public_bytes(serialization.Encoding.PEM) == cert_path.read_bytes()
    _verify_with_openssl(tmp_path, archive.read("manifest.json"), signature, cert_path)


def _verify_with_openssl(folder: Path, manifest: bytes, signature: bytes, cert: Path) -> None:
    """The signature is a valid detached signature of the manifest (openssl checks it).
    openssl runs on the machine's real clock, so it is told the test's time (``-attime``):
    under a shifted clock the certificate made in the test starts in openssl's future."""
    try:
        subprocess.run(["openssl", "version"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no openssl to check the signature with")
    attime = str(int(utc_now().timestamp()))
    (folder / "manifest.json").write_bytes(manifest)
    (folder / "signature").write_bytes(signature)
    done = subprocess.run(
        [
            "openssl", "smime", "-verify", "-binary", "-inform", "DER",
            "-in", str(folder / "signature"), "-content", str(folder / "manifest.json"),
            "-CAfile", str(cert), "-purpose", "any", "-out", "/dev/null", "-attime", attime,
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    tampered = folder / "manifest.json"
    tampered.write_bytes(manifest.replace(b"pass.json", b"pass.jsoN"))
    bad = subprocess.run(
        [
            "openssl", "smime", "-verify", "-binary", "-inform", "DER",
            "-in", str(folder / "signature"), "-content", str(tampered),
            "-CAfile", str(cert), "-purpose", "any", "-out", "/dev/null", "-attime", attime,
        ],
        capture_output=True,
    )  # fmt: skip
    assert bad.returncode != 0
