pytest_plugins = ["tests.conftest_moto"]
