"""An ENT application protected by django-cas-ng; single logout on (its default)."""

import os

from common_settings import *  # noqa: F403
from common_settings import BASE_MIDDLEWARE

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_cas_ng",
]
MIDDLEWARE = BASE_MIDDLEWARE
ROOT_URLCONF = "client_urls"
AUTHENTICATION_BACKENDS = ["django_cas_ng.backends.CASBackend"]
CAS_SERVER_URL = os.environ["CASAPP_CAS_URL"]
CAS_VERSION = "3"
CAS_CREATE_USER = True
CAS_LOGOUT_COMPLETELY = False
# Sessions in the database, which is what lets single logout find and delete them.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
# Both sites live on 127.0.0.1, and cookies ignore ports: distinct names keep them apart.
SESSION_COOKIE_NAME = "app_session"
CSRF_COOKIE_NAME = "app_csrftoken"
