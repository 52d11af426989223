"""JSON merge patch (RFC 7396) for the admin API's PATCH operations.

A patch is applied to the record's editable representation (its fields under the admin API's
names); what differs afterwards is handed to the service as a set of changes, so PATCH, PUT
and the other front-ends share one validation and one audit trail.
"""

from __future__ import annotations

from collections.abc import Mapping

from authserver.web.errors import ValidationError


def apply_merge_patch(target: object, patch: object) -> object:
    """RFC 7396 §2 MergePatch(Target, Patch): objects merge member by member, null removes a
    member, anything else (arrays included) replaces the target."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = apply_merge_patch(result.get(name), value)
    return result


def patch_changes(current: Mapping[str, object], patch: Mapping[str, object],
                  removed: Mapping[str, object]) -> dict:
    """The changes a merge ``patch`` makes to ``current`` (an editable representation).

    ``removed`` gives the value a removable field takes when the patch removes it (null);
    removing any other field is a ValidationError naming it. Unchanged fields are left out.
    """
    patched = apply_merge_patch(dict(current), dict(patch))
    errors = {name: ["cannot be removed (null)"] for name in current
              if name not in patched and name not in removed and current[name] is not None}
    if errors:
        raise ValidationError(errors)
    changes = {}
    for name in current:
        value = patched.get(name, removed.get(name))
        if value != current[name]:
            changes[name] = value
    return changes
