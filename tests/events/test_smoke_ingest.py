from __future__ import annotations

from tests import factories as f
from treu.db.session import Database


def test_purchase_then_partial_return_matches_contract(db: Database) -> None:
    prog = f.programme(db, pending_days=14, expiry={"policy": "rolling", "months": 24})
    anna = f.member(db, prog)
    lines = f.contract_lines()
    sale = f.ingest_one(db, f.purchase_payload(prog, anna, lines=lines))
    assert sale.status == 201
    assert sale.body is not None
    assert sale.body.points.public() == {"earned": 11, "available": 0, "pending": 11, "reversed": 0}
    assert sale.body.postings[0]["explanation"] == "1 point per €1 on €11.57: +11"
    ret = f.ingest_one(db, f.return_payload(prog, sale.event_id, [{"sku": "7002", "quantity": 1}]))
    assert ret.body is not None
    assert ret.body.points.reversed == 9
    bal = f.balance(db, anna)
    assert (bal.available, bal.pending) == (0, 2)
    assert f.verify(db, prog) == []
