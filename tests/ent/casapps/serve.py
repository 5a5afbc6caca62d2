"""Run one of the test's Django sites: `python serve.py server|client PORT`.

Creates the sqlite schema, lets the CAS server accept services on 127.0.0.1, then serves
with Django's development server (no reloader)."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    site, port = sys.argv[1], sys.argv[2]
    os.environ["DJANGO_SETTINGS_MODULE"] = f"{site}_settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    if site == "server":
        from cas_server.models import ServicePattern

        ServicePattern.objects.get_or_create(
            name="local applications",
            defaults={"pos": 1, "pattern": r"^http://127\.0\.0\.1:[0-9]+/.*$"},
        )
    call_command("runserver", f"127.0.0.1:{port}", use_reloader=False, skip_checks=True)


if __name__ == "__main__":
    main()
