"""The development mailbox: in development mode without an SMTP host, the delivery
worker's e-mail lands in ``dev_mailbox`` and ``/dev/mailbox`` shows it (HTML and JSON,
newest first); in production these paths do not exist."""

from __future__ import annotations

from sqlalchemy import select

from tests import factories as f
from tests.messaging.conftest import AppFactory, dev_settings
from treu.config import Settings
from treu.db.session import Database
from treu.delivery.models import Delivery
from treu.delivery.worker import Deliverer
from treu.messaging.channel import email_channels
from treu.messaging.mailbox import DevMailboxSender
from treu.messaging.models import DevMail
from treu.worker.channels import build_channels


def deliver(db: Database, settings: Settings) -> None:
    deliverer = Deliverer(db, build_channels(settings), threads=2)
    try:
        deliverer.run_once()
    finally:
        deliverer.close()


def test_development_mail_is_kept_and_shown_newest_first(
    fresh_db: Database, app_with: AppFactory
) -> None:
    settings = dev_settings(fresh_db)
    [channel] = email_channels(settings)
    assert channel.name in [c.name for c in build_channels(settings)]
    assert isinstance(channel.sender(), DevMailboxSender)
    prog = f.programme(fresh_db)
    first = f.member(fresh_db, prog, language="de", first_name="Anna")
    deliver(fresh_db, settings)
    second = f.member(fresh_db, prog, language="en", first_name="<Bob>")
    deliver(fresh_db, settings)
    deliver(fresh_db, settings)  # nothing new: nothing kept twice

    app = app_with(settings, fresh_db)
    listed = app.client.get("/dev/mailbox?format=json")
    assert listed.status_code == 200, listed.text
    mails = listed.json()
    assert [m["to"] for m in mails] == [second.email, first.email]
    newest = mails[0]
    assert newest["subject"] == "Welcome to Test programme!"
    assert newest["text"].startswith("Hello <Bob>,")
    assert "&lt;Bob&gt;" in newest["html"]
    assert newest["sent_at"]
    assert newest["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert newest["headers"]["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/u/")
    assert mails[1]["subject"] == "Willkommen bei Test programme!"
    with fresh_db.unit_of_work(write=False) as session:
        statuses = session.scalars(select(Delivery.status).where(Delivery.channel == "email")).all()
        kept = session.scalars(select(DevMail)).all()
    assert statuses == ["delivered", "delivered"]
    assert len(kept) == 2

    page = app.client.get("/dev/mailbox")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text.count('data-testid="mail"') == 2
    assert page.text.index(str(second.email)) < page.text.index(str(first.email))
    assert "Willkommen bei Test programme!" in page.text
    one = app.client.get(f"/dev/mailbox/{newest['id']}")
    assert one.status_code == 200
    assert 'data-testid="text"' in one.text
    assert "Hello &lt;Bob&gt;," in one.text  # the text part, escaped into the page
    assert "srcdoc=" in one.text
    assert app.client.get(f"/dev/mailbox/{newest['id']}?format=json").json() == newest

    only = app.client.get("/dev/mailbox", params={"format": "json", "to": first.email}).json()
    assert [m["to"] for m in only] == [first.email]


def test_the_development_mailbox_does_not_exist_in_production(
    db: Database, app_with: AppFactory
) -> None:
    app = app_with(Settings(database_url=db.url, env="production"))
    assert app.client.get("/dev/mailbox").status_code == 404
    assert app.client.get("/dev/mailbox?format=json").status_code == 404
    development = app_with(dev_settings(db)).client.get("/dev/mailbox")
    assert development.status_code == 200
