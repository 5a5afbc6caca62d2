"""django-cas-server: a real CAS 3 server with one test user (its TestAuthUser backend)."""

import os

from common_settings import *  # noqa: F403
from common_settings import BASE_MIDDLEWARE

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "cas_server",
]
MIDDLEWARE = [*BASE_MIDDLEWARE, "django.middleware.locale.LocaleMiddleware"]
ROOT_URLCONF = "server_urls"
CAS_AUTH_CLASS = "cas_server.auth.TestAuthUser"
CAS_TEST_USER = os.environ["CASAPP_USER"]
CAS_TEST_PASSWORD = os.environ["CASAPP_PASSWORD"]
CAS_TEST_ATTRIBUTES = {"email": f"{CAS_TEST_USER}@ent.test"}
# Tickets live long enough for a slow CI machine.
CAS_TICKET_VALIDITY = 120
CAS_NEW_VERSION_HTML_WARNING = False
CAS_SHOW_POWERED = False
# Both sites live on 127.0.0.1, and cookies ignore ports: distinct names keep them apart.
SESSION_COOKIE_NAME = "cas_session"
CSRF_COOKIE_NAME = "cas_csrftoken"
