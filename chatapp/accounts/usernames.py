"""Usernames that could pass for another's: people pick members by name in share forms and
member lists, and the audit trail names accounts by it, so "аlice" (a Cyrillic а) must not
stand beside "alice".

Django's username field already NFKC-normalises what is typed (full-width and mathematical
letters become plain ones). On top of that a new name is refused when its letters mix scripts
the way impersonation does (Unicode UTS #39's "moderately restrictive" level: one script, or
Latin with Han and the Japanese kana, Bopomofo or Hangul, or Latin with one other script
other than Cyrillic and Greek), or when its look-alike skeleton is another account's. The
skeleton folds letter case (before the table too: a name in capitals is the same name, whatever
the database's case folding, SQLite's only ASCII) and a small table of the characters most used
to impersonate: Cyrillic and Greek letters drawn like Latin ones, 0 and o, 1 and l. It is not
Unicode's whole confusables list, which the standard library does not carry. Existing names are
not judged.
"""

import unicodedata

from django.contrib.auth import get_user_model
from django.db.models.functions import Length

MIXED_SCRIPTS = (
    "This username mixes letters of different scripts (such as Latin and Cyrillic), so it"
    " could pass for another name: use the letters of one script."
)
LOOKS_TAKEN = "This username looks like another account's name: choose one that reads differently."

# What each look-alike is drawn as; one character for one, so a name keeps its length.
# Cyrillic: а с ԁ е һ і ј ӏ о р ԛ ѕ ԝ х у ү, and А В С Е Н І Ј К М О Р Ѕ Т Х У Ү Ԛ Ԝ Ӏ.
CYRILLIC = (
    "\u0430\u0441\u0501\u0435\u04bb\u0456\u0458\u04cf\u043e\u0440\u051b\u0455\u051d"
    "\u0445\u0443\u04af",
    "acdehijlopqswxyy",
)
CYRILLIC_CAPITALS = (
    "\u0410\u0412\u0421\u0415\u041d\u0406\u0408\u041a\u041c\u041e\u0420\u0405\u0422"
    "\u0425\u0423\u04ae\u051a\u051c\u04c0",
    "ABCEHIJKMOPSTXYYQWl",
)
# Greek: α ι ο κ ν ρ τ υ χ γ, and Α Β Ε Ζ Η Ι Κ Μ Ν Ο Ρ Τ Υ Χ.
GREEK = ("\u03b1\u03b9\u03bf\u03ba\u03bd\u03c1\u03c4\u03c5\u03c7\u03b3", "aiokvptuxy")
GREEK_CAPITALS = (
    "\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7",
    "ABEZHIKMNOPTYX",
)
# 0 o, 1 l, dotless ı i. Not I and l: names compare in any letter case, and "ALICE" is alice.
LATIN = ("01\u0131", "oli")
LOOKS_LIKE = str.maketrans(
    "".join(table[0] for table in (CYRILLIC, CYRILLIC_CAPITALS, GREEK, GREEK_CAPITALS, LATIN)),
    "".join(table[1] for table in (CYRILLIC, CYRILLIC_CAPITALS, GREEK, GREEK_CAPITALS, LATIN)),
)
# Latin beside Han and the scripts written with it (Japanese, Chinese and Korean names).
LATIN_WITH = (
    {"LATIN", "HAN", "HIRAGANA", "KATAKANA"},
    {"LATIN", "HAN", "BOPOMOFO"},
    {"LATIN", "HAN", "HANGUL"},
)
NEVER_WITH_LATIN = {"CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE"}


def scripts_of(name: str) -> set[str]:
    """The scripts of the name's letters, by their Unicode names (digits, marks, modifier
    letters and punctuation belong to every script)."""
    found = set()
    for char in unicodedata.normalize("NFKC", name):
        if unicodedata.category(char) in ("Lu", "Ll", "Lt", "Lo"):
            script = unicodedata.name(char, "UNKNOWN").split(" ")[0]
            found.add("HAN" if script == "CJK" else script)
    return found


def mixes_scripts(name: str) -> bool:
    scripts = scripts_of(name)
    if len(scripts) <= 1 or any(scripts <= allowed for allowed in LATIN_WITH):
        return False
    return not (len(scripts) == 2 and "LATIN" in scripts and not scripts & NEVER_WITH_LATIN)


def skeleton(name: str) -> str:
    """What the name looks like: equal skeletons read alike."""
    return unicodedata.normalize("NFKC", name).translate(LOOKS_LIKE).casefold()


def skeletons(name: str) -> set[str]:
    """The name's skeleton as written and in small letters: a Greek or Cyrillic capital may
    be drawn like another Latin letter than its small letter (Ν like N, ν like v; В like B),
    so "ΝΙΚΟΣ" and "νικος" have different skeletons as written, the same in small letters."""
    return {skeleton(name), skeleton(unicodedata.normalize("NFKC", name).casefold())}


def lookalike_refusal(name: str, account=None) -> str:
    """Why `name` may not be given to `account` (None: a new one), or "". A name the account
    already has is never refused: existing accounts keep theirs."""
    name = unicodedata.normalize("NFKC", name)  # as Django stores it
    if account is not None and account.username == name:
        return ""
    if mixes_scripts(name):
        return MIXED_SCRIPTS
    others = get_user_model().objects.annotate(length=Length("username"))
    if account is not None:
        others = others.exclude(pk=account.pk)
    # Skeletons keep the length: only names as long as this one can look like it.
    same_length = others.filter(length=len(name)).values_list("username", flat=True)
    wanted = skeletons(name)
    if any(skeletons(other) & wanted for other in same_length.iterator()):
        return LOOKS_TAKEN
    return ""
