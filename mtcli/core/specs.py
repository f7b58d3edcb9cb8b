"""The `NAME[:key=value,...]` form that --combine and --sampler share."""

from mtcli.core.errors import UserError


def parse_spec(spec: str, option: str = "--combine", example: str = "cagrad:c=0.4") -> tuple[str, dict[str, str]]:
    """'cagrad:c=0.4' -> ('cagrad', {'c': '0.4'}); values stay strings until the class casts them.
    `option` and `example` are what an error names (samplers use the same form)."""
    name, _, rest = spec.strip().partition(":")
    params = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"{option} {spec!r}: expected NAME or NAME:key=value,... (for example {example})")
        key = key.strip().replace("-", "_")
        if key in params:
            raise UserError(f"{option} {spec!r}: {key} is given twice; give each parameter once")
        params[key] = value.strip()
    return name.strip().lower(), params
