"""Rewards in the console over HTTP, on both databases: the list with its figures,
creating and editing with every field, errors shown in place, stock set and topped up,
pausing, the uploaded picture (re-encoded, metadata stripped, served by Treu with its
headers), and which roles may do what — refused on the server, CSRF included."""

from __future__ import annotations

import io
import re
import uuid
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import select

from tests import factories as f
from tests.support.admin import csrf_of, signed_in
from tests.support.catalogue import REWARDS, png
from tests.support.queries import statements
from treu.audit.models import AuditEvent
from treu.db.session import Database
from treu.kit.time import utc_now
from treu.media.models import Media
from treu.programmes.models import Programme
from treu.rewards.models import Reward

GPS_TAG = 0x8825


def jpeg_with_gps() -> bytes:
    """A JPEG whose EXIF says where it was taken (and what camera took it)."""
    image = Image.new("RGB", (64, 48), "orange")
    exif = Image.Exif()
    exif[0x010F] = "Spy Camera Inc."  # Make
    exif[0x0110] = "Model 7"
    exif[0x9286] = "secret comment"
    gps = exif.get_ifd(GPS_TAG)
    gps[1] = "N"
    gps[2] = (52.0, 31.0, 12.0)
    gps[3] = "E"
    gps[4] = (13.0, 24.0, 36.0)
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=90)
    data = out.getvalue()
    with Image.open(io.BytesIO(data)) as check:
        assert check.getexif().get_ifd(GPS_TAG), "the fixture must carry GPS data"
    return data


def _reward(db: Database, prog: Programme, code: str) -> Reward:
    with db.unit_of_work(write=False) as session:
        found = session.scalar(
            select(Reward).where(Reward.programme_id == prog.id, Reward.code == code)
        )
        assert found is not None
        return found


def test_the_list_shows_stock_limits_tier_validity_and_redemptions(db: Database) -> None:
    prog = f.programme(db)
    until = utc_now().replace(microsecond=0) + timedelta(days=30)
    limited = f.reward(
        db, prog, stock=5, per_member_limit=2, name={"de": "Kaffee gratis", "en": "Free coffee"},
        valid_until=until.isoformat(),
    )  # fmt: skip
    unlimited = f.reward(db, prog, points_cost=900, status="paused")
    rich = f.member(db, prog)
    f.earn(db, prog, rich, 5000, at=utc_now())
    for _ in range(2):
        f.redeem(db, rich, limited, now=utc_now())
    web, _ = signed_in(db, "analyst")
    page = web.get(f"/admin/rewards?programme={prog.slug}")
    assert page.status_code == 200
    rows = page.text.split('data-testid="reward-row"')[1:]
    assert len(rows) == 2
    first = rows[0]
    assert "Kaffee gratis" in first
    assert re.search(r'data-testid="stock">3 / 5<', first)
    assert re.search(r'data-testid="redemptions">2<', first)
    assert "Gutschein (Betrag)" in first  # the kind, in German
    assert "pausiert" in rows[1]
    assert "unbegrenzt" in rows[1]
    # read-only: no forms, no "new" link
    assert "/admin/rewards/new" not in page.text
    assert f"/admin/rewards/{unlimited.id}/status" not in page.text


def test_the_list_costs_the_same_queries_however_long(db: Database) -> None:

    prog = f.programme(db)
    for _i in range(3):
        f.reward(db, prog)
    web, _email = signed_in(db, "marketing")
    web.get(f"/admin/rewards?programme={prog.slug}")  # the session is trusted from here on
    with statements(db) as few:
        web.get(f"/admin/rewards?programme={prog.slug}")
    for _i in range(5):
        f.reward(db, prog)
    with statements(db) as more:
        assert web.get(f"/admin/rewards?programme={prog.slug}").text.count("reward-row") == 8
    assert len(more) == len(few)


def test_marketing_creates_a_reward_with_every_field(db: Database) -> None:
    prog = f.tiered(db)
    web, email = signed_in(db, "marketing")
    code = f.unique("r")
    done = REWARDS.create(
        web,
        prog,
        code=code,
        type="percent_discount",
        value="",
        percent="12,5",
        min_order="20",
        coupon_valid_days="14",
        per_member_limit="1",
        stock="5",
        min_tier="gold",
        min_membership_days="30",
        valid_from="2030-01-01T00:00",
        valid_until="2030-02-01T00:00",
        description_de="Auf alles",
        description_en="On everything",
        image_url="https://shop.example/img/x.png",
        refund_on_cancel="",
        refund_on_expiry="on",
        restore_on_return="",
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == f"/admin/rewards?programme={prog.slug}&done=created"
    saved = _reward(db, prog, code)
    assert saved.type == "percent_discount"
    assert saved.percent_bp == 1250
    assert saved.min_order_minor == 2000
    assert saved.coupon_valid_days == 14
    assert (saved.stock_total, saved.stock_left, saved.per_member_limit) == (5, 5, 1)
    assert (saved.min_tier, saved.min_membership_days) == ("gold", 30)
    # typed in the programme's time zone (Berlin: UTC+1 in January)
    assert saved.valid_from is not None
    assert saved.valid_from.isoformat() == "2029-12-31T23:00:00+00:00"
    assert saved.description == {"de": "Auf alles", "en": "On everything"}
    assert saved.image_url == "https://shop.example/img/x.png"
    assert (saved.refund_on_cancel, saved.refund_on_expiry, saved.restore_on_return) == (
        False,
        True,
        False,
    )
    with db.unit_of_work(write=False) as session:
        logged = session.scalar(
            select(AuditEvent).where(
                AuditEvent.subject_id == str(saved.id), AuditEvent.action == "reward.create"
            )
        )
    assert logged is not None
    assert logged.actor == f"staff:{email}"


def test_a_code_taken_is_said_at_the_form(db: Database) -> None:
    prog = f.programme(db)
    taken = f.reward(db, prog)
    web, _email = signed_in(db, "marketing")
    answer = REWARDS.create(web, prog, code=taken.code)
    assert answer.status_code == 422
    assert "already" in answer.text


def test_edit_sets_the_stock_and_top_up_adds_to_it(db: Database) -> None:
    prog = f.programme(db)
    reward = f.reward(db, prog, stock=10)
    rich = f.member(db, prog)
    f.earn(db, prog, rich, 5000, at=utc_now())
    for _i in range(3):
        f.redeem(db, rich, reward, now=utc_now())
    web, _email = signed_in(db, "marketing")
    page = web.get(f"/admin/rewards/{reward.id}")
    assert page.status_code == 200
    assert re.search(r'data-testid="stock">7 / 10<', page.text)
    token = csrf_of(page.text)
    values = dict(re.findall(r'name="(\w+)" type="[^"]+" value="([^"]*)"', page.text))
    assert values["stock"] == "10"
    assert values["value"] == "5.00"

    form = {**values, "csrf": token, "stock": "20", "points_cost": "450"}
    saved = web.post(f"/admin/rewards/{reward.id}", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    row = f.reward_row(db, reward)
    assert (row.stock_total, row.stock_left, row.points_cost) == (20, 17, 450)

    # never below what is redeemed
    below = web.post(f"/admin/rewards/{reward.id}", data={**form, "stock": "2"})
    assert below.status_code == 422
    assert re.search(r'id="e-stock">[^<]*3 units are redeemed', below.text)
    assert f.reward_row(db, reward).stock_total == 20

    topped = web.post(
        f"/admin/rewards/{reward.id}/stock",
        data={"csrf": token, "units": "5"},
        follow_redirects=True,
    )
    assert topped.status_code == 200
    assert re.search(r'data-testid="stock">22 / 25<', topped.text)
    too_many = web.post(f"/admin/rewards/{reward.id}/stock", data={"csrf": token, "units": "-30"})
    assert too_many.status_code == 422
    assert 'id="e-units"' in too_many.text
    assert f.reward_row(db, reward).stock_left == 22
    nothing = web.post(f"/admin/rewards/{reward.id}/stock", data={"csrf": token, "units": ""})
    assert nothing.status_code == 422
    for units in ("2147483648", "9223372036854775808"):  # past the limit; past a bigint
        huge = web.post(f"/admin/rewards/{reward.id}/stock", data={"csrf": token, "units": units})
        assert huge.status_code == 422, huge.text
        assert 'id="e-units"' in huge.text
    assert f.reward_row(db, reward).stock_total == 25


def test_deactivate_and_reactivate(db: Database) -> None:
    prog = f.programme(db)
    reward = f.reward(db, prog)
    web, _email = signed_in(db, "marketing")
    page = web.get(f"/admin/rewards?programme={prog.slug}")
    token = csrf_of(page.text)
    off = web.post(
        f"/admin/rewards/{reward.id}/status", data={"csrf": token, "status": "paused"},
        follow_redirects=True,
    )  # fmt: skip
    assert off.status_code == 200
    assert f.reward_row(db, reward).status == "paused"
    assert "Reaktivieren" in off.text
    web.post(f"/admin/rewards/{reward.id}/status", data={"csrf": token, "status": "active"})
    assert f.reward_row(db, reward).status == "active"
    odd = web.post(f"/admin/rewards/{reward.id}/status", data={"csrf": token, "status": "gone"})
    assert odd.status_code == 422
    assert "Bitte eine der Möglichkeiten wählen." in odd.text  # the console's German
    assert f.reward_row(db, reward).status == "active"

    # A stored reward that no longer validates (its stock past today's limit, written
    # before the limit held): the refusal is the field's translated message, not a dump.
    from sqlalchemy import update

    from treu.rewards.models import Reward

    with db.unit_of_work() as session:
        session.execute(
            update(Reward)
            .where(Reward.id == reward.id)
            .values(stock_total=2_000_000_000, stock_left=2_000_000_000)
        )
    stuck = web.post(f"/admin/rewards/{reward.id}/status", data={"csrf": token, "status": "paused"})
    assert stuck.status_code == 422, stuck.text
    assert "pydantic" not in stuck.text
    assert "stock" in stuck.text


def _media_of(db: Database, url: str) -> Media:
    found = re.search(r"/media/([0-9a-f-]{36})/", url)
    assert found is not None, url
    with db.unit_of_work(write=False) as session:
        item = session.get(Media, uuid.UUID(found.group(1)))
        assert item is not None
        return item


def test_an_uploaded_image_is_cleaned_stored_and_served(db: Database) -> None:
    prog = f.programme(db)
    web, _email = signed_in(db, "marketing")
    code = f.unique("r")
    done = REWARDS.create(
        web, prog, code=code, files={"image": ("holiday.jpg", jpeg_with_gps(), "image/jpeg")}
    )
    assert done.status_code == 303, done.text
    saved = _reward(db, prog, code)
    assert saved.image_url is not None
    assert saved.image_url.startswith("http://127.0.0.1:8000/media/")
    path = saved.image_url.removeprefix("http://127.0.0.1:8000")
    assert re.fullmatch(r"/media/[0-9a-f-]{36}/[0-9a-f]{16}\.jpg", path)

    served = web.get(path)
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/jpeg"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "sandbox" in served.headers["content-security-policy"]
    with Image.open(io.BytesIO(served.content)) as image:
        assert image.format == "JPEG"
        assert image.size == (64, 48)
        assert not image.getexif()  # no GPS, no camera, nothing
        assert "exif" not in image.info
    assert b"Spy Camera" not in served.content
    assert b"secret comment" not in served.content

    # the list shows it from Treu itself
    listed = web.get(f"/admin/rewards?programme={prog.slug}")
    assert f'src="{path}"' in listed.text
    # another hash or extension is not that image
    wrong = path[:-8] + "0000.jpg"
    assert web.get(wrong).status_code == 404
    assert web.get(path[:-4] + ".png").status_code == 404
    assert web.get(f"/media/{uuid.uuid4()}/0123456789abcdef.png").status_code == 404
    # public: no staff session needed
    from tests.support.admin import client

    assert client(db).get(path).status_code == 200


def test_a_new_image_replaces_the_old_and_can_be_removed(db: Database) -> None:
    prog = f.programme(db)
    web, _email = signed_in(db, "marketing")
    code = f.unique("r")
    REWARDS.create(web, prog, code=code, files={"image": ("a.png", png(), "image/png")})
    first = _reward(db, prog, code)
    page = web.get(f"/admin/rewards/{first.id}")
    values = dict(re.findall(r'name="(\w+)" type="[^"]+" value="([^"]*)"', page.text))
    form = {**values, "csrf": csrf_of(page.text)}
    replaced = web.post(
        f"/admin/rewards/{first.id}",
        data=form,
        files={"image": ("b.webp", _webp(), "image/webp")},
        follow_redirects=False,
    )
    assert replaced.status_code == 303, replaced.text
    second = _reward(db, prog, code)
    assert second.image_url != first.image_url
    assert second.image_url is not None
    assert second.image_url.endswith(".webp")
    assert _media_of(db, second.image_url).content_type == "image/webp"
    removed = web.post(
        f"/admin/rewards/{first.id}",
        data={**form, "image_url": second.image_url, "remove_image": "on"},
        follow_redirects=False,
    )
    assert removed.status_code == 303
    assert _reward(db, prog, code).image_url is None


def _webp() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (20, 20), (255, 0, 0, 128)).save(out, "WEBP")
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "kind", "text"),
    [
        (
            "page.png",
            b"<html><script>alert(1)</script></html>",
            "image/png",
            "kein PNG-, JPEG- oder WebP-Bild",
        ),
        (
            "vector.png",
            b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>',
            "image/png",
            "kein PNG-, JPEG- oder WebP-Bild",
        ),
        ("anim.png", b"GIF89a" + b"\x00" * 40, "image/png", "kein PNG-, JPEG- oder WebP-Bild"),
        (
            "big.png",
            b"\x89PNG\r\n\x1a\n" + b"\x00" * (1024 * 1024),
            "image/png",
            "höchstens 1024 KB",
        ),
        ("cut.png", png()[:60], "image/png", "kein PNG-, JPEG- oder WebP-Bild"),
    ],
)
def test_what_is_not_a_small_image_is_refused(
    db: Database, name: str, data: bytes, kind: str, text: str
) -> None:
    prog = f.programme(db)
    web, _email = signed_in(db, "marketing")
    code = f.unique("r")
    with db.unit_of_work(write=False) as session:
        before = session.query(Media).count()
    answer = REWARDS.create(web, prog, code=code, files={"image": (name, data, kind)})
    assert answer.status_code == 422
    shown = re.search(r'id="e-image">([^<]*)<', answer.text)
    assert shown is not None, answer.text
    assert text in shown.group(1)
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(Reward).where(Reward.code == code)) is None
        assert session.query(Media).count() == before  # nothing half-stored


def test_a_refused_reward_leaves_no_image_behind(db: Database) -> None:
    prog = f.programme(db)
    web, _email = signed_in(db, "marketing")
    with db.unit_of_work(write=False) as session:
        before = session.query(Media).count()
    answer = REWARDS.create(
        web, prog, min_tier="nope", files={"image": ("a.png", png(), "image/png")}
    )
    assert answer.status_code == 422
    with db.unit_of_work(write=False) as session:
        assert session.query(Media).count() == before


def test_english_pages(db: Database) -> None:
    prog = f.programme(db)
    f.reward(db, prog)
    web, _email = signed_in(db, "marketing")
    web.cookies.set("treu_lang", "en")
    listed = web.get(f"/admin/rewards?programme={prog.slug}")
    assert "Voucher (amount off)" in listed.text
    assert "New reward" in listed.text
    form = web.get(f"/admin/rewards/new?programme={prog.slug}")
    assert "Cost in points" in form.text
