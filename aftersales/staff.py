"""Staff accounts: seller staff belong to one shop, platform operators to none."""
from __future__ import annotations

import functools
import hashlib
import re
import secrets

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from .database import write_transaction
from .errors import InvalidInput
from .extensions import db
from .i18n import _
from .models import INT32_MAX, Shop, StaffUser
from .runtime import current
from .textinput import clean_line

MIN_PASSWORD_LENGTH = 10


class StaffProblem(InvalidInput):
    pass


def create_staff(*, email: str, password: str, name: str = "", shop_slug: str | None = None, role: str | None = None) -> StaffUser:
    email = clean_line(email).lower()
    role = role or ("seller" if shop_slug else "platform")
    if "@" not in email:
        raise StaffProblem(_("%(email)s is not an e-mail address.", email=email), field="email")
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise StaffProblem(_("Use a password of at least %(n)d characters.", n=MIN_PASSWORD_LENGTH), field="password")
    if role == "seller" and not shop_slug:
        raise StaffProblem(_("Seller staff belong to a shop: give --shop."), field="shop")
    if role == "platform" and shop_slug:
        raise StaffProblem(_("Platform operators belong to no shop: leave out --shop."), field="shop")
    with write_transaction():
        shop = None
        if shop_slug:
            shop = db.session.scalar(select(Shop).where(Shop.slug == shop_slug))
            if shop is None:
                raise StaffProblem(_("There is no shop %(slug)s.", slug=shop_slug), field="shop")
        if db.session.scalar(select(StaffUser.id).where(StaffUser.email == email)) is not None:
            raise StaffProblem(_("A staff login for %(email)s already exists.", email=email), field="email")
        staff = StaffUser(email=email, name=name or email, role=role, shop=shop)
        staff.set_password(password, password_hash_method())
        db.session.add(staff)
    return staff


#: The password of an account a host vouches for: no password the staff login accepts.
_NO_PASSWORD = "!host"


def staff_for_host_user(*, email: str, name: str = "", shop: str | None = None, platform: bool = False) -> StaffUser:
    """The module's staff account of a host marketplace's user, made on first use (for the
    ``aftersales_current_staff`` hook): seller staff of the shop with slug ``shop``, or a platform
    operator (``platform=True``). Matched by e-mail address; the name and shop follow the host's.
    Such an account has no password of its own: the host logs its people in. Raises
    :class:`StaffProblem` for a missing shop, an unclear role, or an address that already has a
    login of the module's own (made with create-staff): a host user never takes one over."""
    address = clean_line(email).lower()
    if "@" not in address:
        raise StaffProblem(_("%(email)s is not an e-mail address.", email=address), field="email")
    if platform == bool(shop):
        raise StaffProblem(_("A host user is either staff of one shop or a platform operator."), field="shop")
    staff = db.session.scalar(select(StaffUser).where(StaffUser.email == address))
    shop_row = db.session.scalar(select(Shop).where(Shop.slug == shop)) if shop else None
    if shop and shop_row is None:
        raise StaffProblem(_("There is no shop %(slug)s.", slug=shop), field="shop")
    wanted = {"name": clean_line(name) or address, "role": "platform" if platform else "seller",
              "shop_id": shop_row.id if shop_row is not None else None}
    if staff is not None and staff.password_hash != _NO_PASSWORD:
        # A login made with create-staff is a person of the module's own; a host user with the
        # same address does not take it over (nor its password, role or shop).
        raise StaffProblem(_("%(email)s already has a staff login of its own; give the host user another address.",
                             email=address), field="email")
    if staff is not None and all(getattr(staff, key) == value for key, value in wanted.items()):
        return staff
    with write_transaction():
        staff = db.session.scalar(select(StaffUser).where(StaffUser.email == address))
        if staff is not None and staff.password_hash != _NO_PASSWORD:
            raise StaffProblem(_("%(email)s already has a staff login of its own; give the host user another address.",
                                 email=address), field="email")
        if staff is None:
            staff = StaffUser(email=address, password_hash=_NO_PASSWORD, **wanted)
            db.session.add(staff)
        else:
            for key, value in wanted.items():
                setattr(staff, key, value)
    return staff


def authenticate(email: str, password: str) -> StaffUser | None:
    """The active staff login with this e-mail and password, else None.

    The password is checked against a hash either way (a stand-in, made like real ones, for an
    unknown address), so neither the answer nor the time it takes tells which addresses are staff's.
    """
    address = clean_line(email).lower()
    staff = db.session.scalar(select(StaffUser).where(StaffUser.email == address)) if address else None
    stand_in = staff is None or staff.password_hash == _NO_PASSWORD
    password_ok = check_password_hash(_stand_in_hash(password_hash_method()) if stand_in else staff.password_hash,
                                      password or "")
    return staff if staff is not None and staff.active and password_ok else None


@functools.cache
def _stand_in_hash(method: str) -> str:
    """A hash no password matches, made with the method and cost of real ones."""
    return generate_password_hash(secrets.token_hex(16), method=method)


_HASH_METHOD = re.compile(r"scrypt(:\d+:\d+:\d+)?|pbkdf2(:(?P<digest>[a-z0-9_]+)(:\d+)?)?")


def password_hash_method() -> str:
    """How new passwords are hashed: the ``AFTERSALES_PASSWORD_HASH`` setting."""
    return current().settings["AFTERSALES_PASSWORD_HASH"]


def check_password_hash_method(method: object) -> None:
    """Refuse, at startup, an ``AFTERSALES_PASSWORD_HASH`` werkzeug would only refuse at the
    first login or new password."""
    match = _HASH_METHOD.fullmatch(method) if isinstance(method, str) else None
    usable = match is not None and not (match.group("digest") and match.group("digest") not in hashlib.algorithms_available)
    if usable:
        try:  # what werkzeug itself accepts (a cost of 0, a digest it cannot use ...): one hash, once
            _stand_in_hash(method)
        except (ValueError, TypeError, OverflowError, MemoryError):
            usable = False
    if not usable:
        raise RuntimeError(f"AFTERSALES_PASSWORD_HASH: {method!r} is not a password hash method; use 'scrypt', "
                           "'scrypt:<n>:<r>:<p>' or 'pbkdf2:<digest>:<iterations>' (e.g. 'pbkdf2:sha256:600000')")


def staff_for_login_id(login_id: str) -> StaffUser | None:
    """The staff member a login cookie's id (``StaffUser.get_id``: ``<id>.<generation>``) names,
    if the cookie is still good: the account is active and the generation is the account's."""
    staff_id, _, generation = str(login_id).partition(".")
    if not (staff_id.isdigit() and generation.isdigit()) or int(staff_id) > INT32_MAX:
        return None
    staff = db.session.get(StaffUser, int(staff_id))
    if staff is None or not staff.active or (staff.session_generation or 0) != int(generation):
        return None
    return staff


def end_sessions(staff_id: int) -> None:
    """Log this account out everywhere: every login cookie issued so far stops working."""
    with write_transaction():
        staff = db.session.get(StaffUser, staff_id)
        if staff is not None:
            staff.end_sessions()


def set_active(email: str, active: bool) -> StaffUser:
    """Deactivate a staff login (its sessions end at once) or let it log in again (old cookies
    stay dead: deactivation ended them)."""
    with write_transaction():
        staff = _staff_by_email(email)
        staff.active = active
    return staff


def set_password(email: str, password: str) -> StaffUser:
    """A new password; every session of the account ends (log in again with the new one)."""
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise StaffProblem(_("Use a password of at least %(n)d characters.", n=MIN_PASSWORD_LENGTH), field="password")
    with write_transaction():
        staff = _staff_by_email(email)
        staff.set_password(password, password_hash_method())
    return staff


def _staff_by_email(email: str) -> StaffUser:
    address = clean_line(email).lower()
    staff = db.session.scalar(select(StaffUser).where(StaffUser.email == address))
    if staff is None:
        raise StaffProblem(_("There is no staff login for %(email)s.", email=address), field="email")
    return staff
