"""Skill normalisation for the feed: case, spacing and a small synonym table.

Profiles already store skills trimmed and case-folded (domain.models); the feed
also folds common aliases onto one name so that "js" and "javascript" count
as a shared skill. The table is short on purpose: it only merges names that
mean the same thing, never related technologies.
"""

from __future__ import annotations

from collections.abc import Iterable

SYNONYMS: dict[str, str] = {
    "js": "javascript",
    "ecmascript": "javascript",
    "ts": "typescript",
    "py": "python",
    "python3": "python",
    "golang": "go",
    "c++": "cpp",
    "c#": "csharp",
    "k8s": "kubernetes",
    "postgres": "postgresql",
    "psql": "postgresql",
    "mongo": "mongodb",
    "node": "node.js",
    "nodejs": "node.js",
    "react.js": "react",
    "reactjs": "react",
    "vue.js": "vue",
    "vuejs": "vue",
    "ml": "machine learning",
    "rb": "ruby",
    "rust-lang": "rust",
}


def normalize_skill(raw: str) -> str:
    skill = " ".join(raw.split()).casefold()
    return SYNONYMS.get(skill, skill)


def normalize_skills(raw: Iterable[str]) -> frozenset[str]:
    return frozenset(s for s in (normalize_skill(r) for r in raw) if s)


def query_forms(skills: Iterable[str]) -> list[str]:
    """Every stored spelling that normalises to one of these skills, for an index lookup.

    Profiles store the user's own spelling, so a search for "javascript"
    must also ask for "js".
    """
    wanted = set(skills)
    forms = set(wanted)
    forms.update(alias for alias, name in SYNONYMS.items() if name in wanted)
    return sorted(forms)
