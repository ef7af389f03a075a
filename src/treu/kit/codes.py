"""Coupon codes: unguessable, easy to read aloud and to type, with a check character.

A code is ``BODY_LENGTH`` characters drawn with ``secrets`` from a 31-character alphabet
that leaves out what people confuse (``0``/``O``, ``1``/``I``/``L``), plus one check
character: 15 random characters carry 31**15 ≈ 2**74 possibilities, so a code cannot be
guessed, and the whole code is printed as four groups of four (``7KQM-XH3R-T9PW-BC2E``).

Why 31 characters: the check character is a weighted sum modulo a *prime*. With
``sum(weight_i * value_i) ≡ 0 (mod 31)`` over the whole code and the weights 1..16
(all different and non-zero modulo 31):

* changing one character by ``d`` changes the sum by ``weight * d``, never ≡ 0 because 31
  is prime and neither factor is a multiple of it: every single typo is caught;
* swapping two neighbours ``a b`` changes it by ``(w_i - w_{i+1}) * (b - a)``, again never
  ≡ 0: every adjacent transposition is caught (Luhn's mod-10 check misses ``09``/``90``).

The till or web shop may send what the customer typed: ``normalise`` ignores case,
spaces and dashes. Codes are stored normalised (16 characters, no dashes).
"""

from __future__ import annotations

import secrets

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
"""Digits 2-9 and the letters without I, L and O: 31 characters, a prime number."""
BODY_LENGTH = 15
CODE_LENGTH = BODY_LENGTH + 1
GROUP = 4

_VALUE = {char: value for value, char in enumerate(ALPHABET)}
_MODULUS = len(ALPHABET)
_SEPARATORS = str.maketrans("", "", " -_\t\n\r\u00a0\u2010\u2011\u2012\u2013\u2014")
"""What people and scanners put between groups: spaces, dashes of every kind, underscores."""

assert _MODULUS == 31  # a prime
assert CODE_LENGTH < _MODULUS  # weights 1..16 stay distinct and non-zero mod 31


def _weighted(chars: str) -> int:
    return sum((position + 1) * _VALUE[char] for position, char in enumerate(chars))


def check_char(body: str) -> str:
    """The character that makes ``body + check`` valid. ``body`` must be normalised."""
    if not body or any(char not in _VALUE for char in body) or len(body) + 1 >= _MODULUS:
        raise ValueError("the body must be 1 to 29 characters of the code alphabet")
    weight = len(body) + 1
    # weight * value ≡ -sum (mod 31): multiply by the inverse of the weight.
    value = (-_weighted(body) * pow(weight, -1, _MODULUS)) % _MODULUS
    return ALPHABET[value]


def new_code() -> str:
    """A fresh code (normalised, check character last)."""
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH))
    return body + check_char(body)


def normalise(text: str) -> str:
    """Upper case without spaces or dashes: ``" 7kqm-xh3r t9pw-bc2e "`` → ``7KQMXH3RT9PWBC2E``."""
    return text.translate(_SEPARATORS).upper()


def is_valid(text: str) -> bool:
    """Whether ``text`` (as typed) is a well-formed code with a matching check character."""
    code = normalise(text)
    if len(code) != CODE_LENGTH or any(char not in _VALUE for char in code):
        return False
    return _weighted(code) % _MODULUS == 0


def format_code(code: str) -> str:
    """Groups of four for printing and reading aloud: ``7KQM-XH3R-T9PW-BC2E``."""
    code = normalise(code)
    return "-".join(code[i : i + GROUP] for i in range(0, len(code), GROUP))
