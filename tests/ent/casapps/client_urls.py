from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django_cas_ng import views as cas_views


def whoami(request: HttpRequest) -> HttpResponse:
    """The application's own view of the session: who is logged in, if anyone."""
    if not request.user.is_authenticated:
        return JsonResponse({"user": None}, status=401)
    return JsonResponse({"user": request.user.get_username()})


urlpatterns = [
    path("accounts/login/", cas_views.LoginView.as_view(), name="cas_ng_login"),
    path("accounts/logout/", cas_views.LogoutView.as_view(), name="cas_ng_logout"),
    path("whoami/", whoami),
]
