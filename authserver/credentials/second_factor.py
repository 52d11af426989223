"""An operator's optional second factor: TOTP codes (RFC 6238) and single-use recovery codes.

The TOTP secret is shown once, at enrollment, and stored encrypted with the deployment's
keyring (the same AES-GCM ring as the signing keys), bound to the operator's row id. The factor
counts only once a code from the operator's authenticator confirmed it. A code is accepted for
the current 30 s step or one step either side (clock drift), and never twice: the last step
accepted is kept, and only a later one passes (RFC 6238 §5.2, "the verifier MUST NOT accept
the second attempt of the OTP after the successful validation has been issued for the first
OTP"). The ten recovery codes are random, stored as SHA-256 only, and each works once.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets

import pyotp
import sqlalchemy as sa

from authserver.accounts import registry as accounts
from authserver.clock import isoformat, utcnow
from authserver.credentials.hashing import hash_secret
from authserver.credentials.keyring import UndecryptableKeyError, current_keyring
from authserver.credentials.operators import OBJECT_TYPE, describe, get_operator
from authserver.storage import audit
from authserver.storage.audit import Actor
from authserver.storage.db import db
from authserver.storage.models import Operator, OperatorRecoveryCode
from authserver.web.errors import ValidationError

log = logging.getLogger(__name__)

ISSUER_NAME = "authserver"
DIGITS, STEP_SECONDS, DRIFT_STEPS = 6, 30, 1
CODE_RE = re.compile(r"^[0-9]{6}$")
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
RECOVERY_LENGTH = 12  # about 59 bits, shown as xxxx-xxxx-xxxx
RECOVERY_RE = re.compile(rf"^[{RECOVERY_ALPHABET}]{{{RECOVERY_LENGTH}}}$")


def _actor(operator: Operator) -> Actor:
    return Actor(f"operator:{operator.username}", operator.account_id)


def _aad(operator: Operator) -> str:
    """Binds a ciphertext to its operator: a secret copied to another row does not open."""
    return f"operator-totp:{operator.id}"


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)


def _secret(operator: Operator) -> str | None:
    if operator.totp_secret is None:
        return None
    try:
        return current_keyring().decrypt(_aad(operator), operator.totp_secret)[0].decode()
    except UndecryptableKeyError:
        log.error("the TOTP secret of operator %s cannot be decrypted with this keyring",
                  operator.username)
        return None


def is_enabled(operator: Operator) -> bool:
    """True when the operator's second factor is on (confirmed)."""
    return operator.totp_confirmed_at is not None


def _matching_step(secret: str, code: object) -> int | None:
    """The time step (current or one either side) whose code is ``code``, or None."""
    if not isinstance(code, str):
        return None
    code = code.replace(" ", "")
    if not CODE_RE.match(code):
        return None
    totp = _totp(secret)
    now = totp.timecode(utcnow())
    match = None
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):  # check them all, same time
            match = step
    return match


def begin_enrollment(operator: Operator) -> tuple[str, str]:
    """A new secret for ``operator`` (replacing an unconfirmed one): the base32 secret and its
    ``otpauth://`` URI, both to show once. Refused while a confirmed factor is on."""
    if is_enabled(operator):
        raise ValidationError({"twoFactor": ["is already on; an owner can reset it"]})
    secret = pyotp.random_base32()  # 160 bits, RFC 4226 §4's recommended length
    operator.totp_secret = current_keyring().encrypt(_aad(operator), secret.encode())
    operator.totp_confirmed_at = operator.totp_last_step = None
    db.session.commit()
    return secret, provisioning_uri(operator, secret)


def provisioning_uri(operator: Operator, secret: str) -> str:
    """The ``otpauth://totp/...`` URI authenticator apps read (no QR code needed)."""
    return _totp(secret).provisioning_uri(name=operator.username, issuer_name=ISSUER_NAME)


def confirm_enrollment(operator: Operator, code: object) -> list[str]:
    """Turn the factor on with a code from the new secret; returns the recovery codes (shown
    once). Audited. ValidationError if there is nothing to confirm or the code is wrong."""
    secret = None if is_enabled(operator) else _secret(operator)
    if secret is None:
        raise ValidationError({"code": ["there is no set-up to confirm: start again"]})
    step = _matching_step(secret, code)
    if step is None:
        raise ValidationError({"code": ["is not the code your authenticator shows now"]})
    before = describe(operator)
    operator.totp_confirmed_at = utcnow()
    operator.totp_last_step = step
    codes = _replace_recovery_codes(operator)
    audit.record(_actor(operator), "enroll-2fa", OBJECT_TYPE, operator.username, before,
                 dict(describe(operator), recoveryCodes=len(codes)),
                 account_id=operator.account_id)
    db.session.commit()
    return codes


def _normalize_recovery(code: str) -> str:
    return code.strip().lower().replace("-", "").replace(" ", "")


def _replace_recovery_codes(operator: Operator) -> list[str]:
    db.session.execute(sa.delete(OperatorRecoveryCode)
                       .where(OperatorRecoveryCode.operator_id == operator.id))
    codes = ["".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
             for _ in range(RECOVERY_CODES)]
    db.session.add_all(OperatorRecoveryCode(operator_id=operator.id, code_hash=hash_secret(code))
                       for code in codes)
    return [f"{code[:4]}-{code[4:8]}-{code[8:]}" for code in codes]


def remaining_recovery_codes(operator: Operator) -> int:
    """How many of the operator's recovery codes are still unused."""
    return db.session.scalar(sa.select(sa.func.count()).select_from(OperatorRecoveryCode).where(
        OperatorRecoveryCode.operator_id == operator.id, OperatorRecoveryCode.used_at.is_(None)))


def verify(operator: Operator, code: object) -> bool:
    """Check a sign-in's second factor: a TOTP code not used before, or an unused recovery
    code (then used up; audited). Each check is one conditional UPDATE, so two requests with
    the same code cannot both pass."""
    if not is_enabled(operator) or not isinstance(code, str) or len(code) > 64:
        return False
    secret = _secret(operator)
    step = _matching_step(secret, code) if secret else None
    if step is not None:
        accepted = db.session.execute(
            sa.update(Operator).where(Operator.id == operator.id, sa.or_(
                Operator.totp_last_step.is_(None), Operator.totp_last_step < step))
            .values(totp_last_step=step)).rowcount == 1
        db.session.commit()
        return accepted
    recovery = _normalize_recovery(code)
    if not RECOVERY_RE.match(recovery):
        return False
    used = db.session.execute(
        sa.update(OperatorRecoveryCode).where(
            OperatorRecoveryCode.operator_id == operator.id,
            OperatorRecoveryCode.code_hash == hash_secret(recovery),
            OperatorRecoveryCode.used_at.is_(None))
        .values(used_at=utcnow())).rowcount == 1
    if used:
        audit.record(_actor(operator), "use-recovery-code", OBJECT_TYPE, operator.username,
                     after={"recoveryCodesLeft": remaining_recovery_codes(operator),
                            "usedAt": isoformat(utcnow())},
                     account_id=operator.account_id)
    db.session.commit()
    return used


def reset(username: object, *, actor: Actor | str, account_id: str | None = None) -> Operator:
    """Turn an operator's second factor off (secret and recovery codes deleted), so they can
    sign in with the password alone and enroll again. Audited."""
    actor = accounts.as_actor(actor)
    operator = get_operator(username, account_id)
    before = describe(operator)
    operator.totp_secret = operator.totp_confirmed_at = operator.totp_last_step = None
    db.session.execute(sa.delete(OperatorRecoveryCode)
                       .where(OperatorRecoveryCode.operator_id == operator.id))
    audit.record(actor, "reset-2fa", OBJECT_TYPE, operator.username, before, describe(operator),
                 account_id=operator.account_id)
    db.session.commit()
    return operator


def reencrypt_secrets() -> int:
    """Re-encrypt every stored TOTP secret under the keyring's first key (a key rollover);
    the caller commits. Returns how many were rewritten."""
    ring = current_keyring()
    rewritten = 0
    for operator in db.session.scalars(sa.select(Operator)
                                       .where(Operator.totp_secret.is_not(None))):
        plaintext, position = ring.decrypt(_aad(operator), operator.totp_secret)
        if position:
            operator.totp_secret = ring.encrypt(_aad(operator), plaintext)
            rewritten += 1
    return rewritten
