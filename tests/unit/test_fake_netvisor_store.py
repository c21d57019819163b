"""The fake Netvisor's books: pricing, reference numbers, duplicates, edits, payments, credit notes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from adapters.netvisor.fake.behaviour import Behaviour, Duplicates
from adapters.netvisor.fake.errors import ErrorCode, NetvisorError, RefusalKind
from adapters.netvisor.fake.store import (
    CommentLine,
    InvoiceDraft,
    LineDraft,
    NetvisorStore,
    finnish_reference,
    price_line,
    valid_reference,
)

NOW = dt.datetime(2025, 6, 10, 9, 0, tzinfo=dt.UTC)
D = Decimal


def line(price: str = "100", quantity: str = "1", vat: str = "25.5", **options: object) -> LineDraft:
    return LineDraft("DEV", "Development", D(price), D(vat), D(quantity), **options)  # type: ignore[arg-type]


def draft(**changes: object) -> InvoiceDraft:
    values: dict[str, object] = {
        "invoice_date": dt.date(2025, 6, 1),
        "customer_identifier": "1001",
        "lines": [line()],
        "payment_term_net_days": 14,
    }
    values.update(changes)
    return InvoiceDraft(**values)  # type: ignore[arg-type]


@pytest.fixture
def store() -> NetvisorStore:
    books = NetvisorStore()
    books.add_customer(
        {"customerbaseinformation": {"internalidentifier": "1001", "name": "Acme Oy"}}, now=NOW
    )
    return books


@pytest.mark.parametrize(
    ("draft_line", "net", "vat", "gross"),
    [
        pytest.param(line("100", "2"), "200.00", "51.00", "251.00", id="net price: VAT on top"),
        pytest.param(line("100.005", "2"), "200.01", "51.00", "251.01", id="the net sum is rounded half up"),
        pytest.param(line("0.333", "3", "24"), "1.00", "0.24", "1.24", id="a third of a cent rounds away"),
        pytest.param(
            line("125.50", "1", price_type="gross"), "100.00", "25.50", "125.50", id="gross price: VAT inside"
        ),
        pytest.param(
            line("100", "1", discount_percent=D("10")), "90.00", "22.95", "112.95", id="a discount lowers net"
        ),
        pytest.param(line("100", "-2"), "-200.00", "-51.00", "-251.00", id="a credit line is negative"),
        pytest.param(line("100", "1", "0", vat_code="EUMY"), "100.00", "0.00", "100.00", id="zero VAT"),
        pytest.param(
            line("100", "1", vat_sum=D("25.49"), sum=D("125.49")),
            "100.00",
            "25.49",
            "125.49",
            id="explicit VAT sum and sum win",
        ),
    ],
)
def test_line_sums_are_rounded_as_netvisor_rounds(
    draft_line: LineDraft, net: str, vat: str, gross: str
) -> None:
    priced = price_line(draft_line)

    assert (priced.net_sum, priced.vat_sum, priced.gross_sum) == (D(net), D(vat), D(gross))


@pytest.mark.parametrize(
    ("reference", "valid"),
    [
        pytest.param("1232", True, id="a Finnish reference with its check digit is valid"),
        pytest.param("1233", False, id="a wrong check digit is invalid"),
        pytest.param("12345 67897", True, id="a valid one grouped with spaces is valid"),
        pytest.param("12345 67898", False, id="a wrong one grouped with spaces is invalid"),
        pytest.param("20019", True, id="the fake's own generated reference is valid"),
        pytest.param("RF18539007547034", True, id="an RF creditor reference is valid"),
        pytest.param("RF19539007547034", False, id="an RF reference with a wrong check is invalid"),
        pytest.param("123", False, id="three digits are too short"),
        pytest.param("INV-1", False, id="letters are not a reference"),
    ],
)
def test_reference_numbers_are_checked(reference: str, valid: bool) -> None:
    assert valid_reference(reference) is valid


def test_a_generated_reference_carries_the_7_3_1_check_digit() -> None:
    assert finnish_reference("123") == "1232"
    assert finnish_reference("2001") == "20019"


def test_an_invoice_takes_the_next_free_number_and_a_generated_reference(store: NetvisorStore) -> None:
    store.add_invoice(draft(number="41"), now=NOW)
    invoice = store.add_invoice(draft(), now=NOW)

    assert invoice.number == "42"
    assert valid_reference(invoice.reference_number)
    assert invoice.due_date == dt.date(2025, 6, 15)
    assert invoice.amount == invoice.open_sum == D("125.50")


def test_the_invoice_sum_is_the_given_amount_or_the_sum_of_the_lines(store: NetvisorStore) -> None:
    summed = store.add_invoice(draft(lines=[line(), CommentLine("note"), line("0.01")]), now=NOW)
    given = store.add_invoice(draft(amount=D("99.999")), now=NOW)

    assert summed.amount == D("125.51")
    assert given.amount == D("100.00")


def test_a_customer_code_is_unique_unless_told_otherwise(store: NetvisorStore) -> None:
    second = {"customerbaseinformation": {"internalidentifier": "1001", "name": "Copy"}}

    with pytest.raises(NetvisorError) as caught:
        store.add_customer(second, now=NOW)
    store.behaviour.duplicate_customer_code = Duplicates.ACCEPT
    store.add_customer(second, now=NOW)

    assert (caught.value.code, caught.value.refusal) == (ErrorCode.DUPLICATE_DATA, RefusalKind.DUPLICATE)
    assert len(store.customers) == 2


def test_an_edit_cannot_take_another_customers_code(store: NetvisorStore) -> None:
    other = store.add_customer(
        {"customerbaseinformation": {"internalidentifier": "1002", "name": "B"}}, now=NOW
    )

    with pytest.raises(NetvisorError) as caught:
        store.edit_customer(
            other.netvisor_key,
            {"customerbaseinformation": {"internalidentifier": "1001", "name": "B"}},
            now=NOW,
        )

    assert caught.value.code is ErrorCode.DUPLICATE_DATA


def test_an_edit_blanks_and_a_change_by_hand_keeps(store: NetvisorStore) -> None:
    key = store.add_customer(
        {"customerbaseinformation": {"internalidentifier": "7", "name": "A", "city": "Turku"}}, now=NOW
    ).netvisor_key

    kept = store.change_customer(key, {"customerbaseinformation": {"email": "a@example.com"}}, now=NOW)
    assert (kept.base["city"], kept.base["email"]) == ("Turku", "a@example.com")
    blanked = store.edit_customer(key, {"customerbaseinformation": {"name": "A"}}, now=NOW)

    assert (blanked.base["city"], blanked.base["email"], blanked.code) == ("", "", "")


def test_an_automatic_code_on_edit_keeps_the_customers_own(store: NetvisorStore) -> None:
    key = next(iter(store.customers))

    edited = store.edit_customer(
        key, {"customerbaseinformation": {"name": "Acme"}}, now=NOW, automatic_code=True
    )

    assert edited.code == "1001"


def test_a_duplicate_invoice_number_is_accepted_by_default_and_refused_on_request(
    store: NetvisorStore,
) -> None:
    store.add_invoice(draft(number="5"), now=NOW)
    store.add_invoice(draft(number="5"), now=NOW)
    store.behaviour.duplicate_invoice_number = Duplicates.REFUSE

    with pytest.raises(NetvisorError) as caught:
        store.add_invoice(draft(number="5"), now=NOW)

    assert caught.value.code is ErrorCode.DUPLICATE_DATA


def test_an_invoice_in_a_locked_period_is_refused() -> None:
    store = NetvisorStore(Behaviour(period_locked_until=dt.date(2025, 6, 1)))
    store.add_customer({"customerbaseinformation": {"internalidentifier": "1001", "name": "A"}}, now=NOW)

    with pytest.raises(NetvisorError) as caught:
        store.add_invoice(draft(), now=NOW)

    assert caught.value.code is ErrorCode.PERIOD_LOCK


def test_payments_lower_the_open_sum_and_a_full_one_marks_it_paid(store: NetvisorStore) -> None:
    invoice = store.add_invoice(draft(), now=NOW)
    later = NOW + dt.timedelta(days=1)

    first = store.register_payment(invoice.netvisor_key, now=later, date=later.date(), amount=D("25.50"))
    assert (invoice.open_sum, invoice.status, invoice.changed_at) == (D("100.00"), "open", later)
    store.register_payment(invoice.netvisor_key, now=later, date=later.date())

    assert (invoice.open_sum, invoice.status) == (D("0.00"), "paid")
    assert (first.name, first.invoice_number, first.reference_number) == (
        "Acme Oy",
        invoice.number,
        invoice.reference_number,
    )
    with pytest.raises(ValueError, match="positive"):
        store.register_payment(invoice.netvisor_key, now=later, date=later.date())


def test_an_edit_keeps_what_was_already_paid(store: NetvisorStore) -> None:
    invoice = store.add_invoice(draft(), now=NOW)
    store.register_payment(invoice.netvisor_key, now=NOW, date=NOW.date(), amount=D("25.50"))

    edited = store.edit_invoice(invoice.netvisor_key, draft(lines=[line("200")]), now=NOW)

    assert (edited.amount, edited.open_sum, edited.number) == (D("251.00"), D("225.50"), invoice.number)


def test_the_status_may_be_set_for_known_invoices_only(store: NetvisorStore) -> None:
    invoice = store.add_invoice(draft(status="unsent"), now=NOW)

    with pytest.raises(NetvisorError):
        store.set_invoice_status([invoice.netvisor_key, 4242], "open", now=NOW)
    assert invoice.status == "unsent"  # all or nothing
    with pytest.raises(NetvisorError):
        store.set_invoice_status([invoice.netvisor_key], "unsent", now=NOW)
    store.set_invoice_status([invoice.netvisor_key], "paid", now=NOW)

    assert (invoice.status, invoice.open_sum) == ("paid", 0)


def test_a_credit_note_settles_its_invoice(store: NetvisorStore) -> None:
    invoice = store.add_invoice(draft(), now=NOW)
    credit = store.add_invoice(draft(lines=[line("100", "-1")]), now=NOW)
    unsent = store.add_invoice(draft(lines=[line("100", "-1")], status="unsent"), now=NOW)

    match = store.match_credit_note(credit.netvisor_key, invoice.netvisor_key, now=NOW)

    assert match.sum == D("125.50")
    assert (invoice.open_sum, invoice.status, credit.open_sum) == (0, "paid", 0)
    with pytest.raises(NetvisorError, match="already been matched"):
        store.match_credit_note(credit.netvisor_key, invoice.netvisor_key, now=NOW)
    with pytest.raises(NetvisorError, match="vouchers"):
        store.match_credit_note(unsent.netvisor_key, invoice.netvisor_key, now=NOW)
    with pytest.raises(NetvisorError, match="not a credit note"):
        store.match_credit_note(invoice.netvisor_key, credit.netvisor_key, now=NOW)


def test_an_open_invoice_past_its_due_date_reads_overdue(store: NetvisorStore) -> None:
    invoice = store.add_invoice(draft(), now=NOW)

    assert invoice.substatus(dt.date(2025, 6, 15)) == "open"
    assert invoice.substatus(dt.date(2025, 6, 16)) == "overdue"
    assert invoice.main_status() == "open"


def test_keys_of_different_tables_never_coincide(store: NetvisorStore) -> None:
    invoice = store.add_invoice(draft(), now=NOW)
    payment = store.register_payment(invoice.netvisor_key, now=NOW, date=NOW.date())

    assert len({next(iter(store.customers)), invoice.netvisor_key, payment.netvisor_key}) == 3
