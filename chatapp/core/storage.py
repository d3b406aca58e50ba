from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    """Hashed, compressed static files whose ES module imports point at the hashed names too,
    so a deploy never mixes an old module with a new one."""

    support_js_module_import_aggregation = True
