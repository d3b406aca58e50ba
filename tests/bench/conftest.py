def pytest_configure(config):
    config.addinivalue_line(
        "markers", "bench: a quick end-to-end run of a benchmark harness (no timing asserted)"
    )
