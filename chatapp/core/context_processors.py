from django.conf import settings


def site(request):
    return {"offline_demo": settings.LLAMA_OFFLINE_DEMO}
