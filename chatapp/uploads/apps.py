from django.apps import AppConfig


class UploadsConfig(AppConfig):
    name = "chatapp.uploads"
    label = "uploads"

    def ready(self) -> None:
        from chatapp.uploads import signals  # noqa: F401  (connects the file clean-up)
