"""One settings object for the whole system, read from ``DAWA_*`` environment variables.

It lives in stock/ because stock/ is the bottom layer: anomaly/ and web/ import it from here,
and nothing below it needs to know about them. No other module reads the environment.
"""

from __future__ import annotations

import secrets
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Detection(BaseModel):
    """Detector thresholds (environment: ``DAWA_DETECTION__NAME``). Defaults are chosen so that
    legitimate look-alikes (refills, referrals, partial fills, hospital night shifts, seasonal
    peaks) stay below them on realistic data; ``dawa evaluate`` measures the effect of a change."""

    over_prescription_ratio: float = Field(1.2, description="flag a fill above this multiple of the prescribed quantity")
    count_tolerance_units: float = Field(2, description="count shortfalls up to this many units are noise")
    count_tolerance_share: float = Field(0.02, description="... or up to this share of the book quantity")
    writeoff_min_days_to_expiry: int = Field(90, description="an expiry write-off this far from expiry is premature")
    transfer_receipt_days: int = Field(7, description="a transfer_out not received within this many days is missing")
    transfer_tolerance_share: float = Field(0.0, description="share of a transfer that may arrive short unexplained")
    off_hours_start: int = Field(22, description="local hour from which dispensing counts as off-hours")
    off_hours_end: int = Field(6, description="local hour until which dispensing counts as off-hours")
    mad_threshold: float = Field(3.5, description="modified z-score above which a value is an outlier")
    min_history_months: int = Field(3, description="months of history needed before comparing with it")
    min_peers: int = Field(3, description="peer facilities or colleagues needed before comparing with them")
    isolation_contamination: float = Field(0.01, description="share of rows the learned detector may call unusual")
    random_state: int = Field(0, description="fixes every random choice, so scans are deterministic")
    scan_lookback_days: int = Field(
        200, description="an incremental scan re-reads this much history before the earliest new movement: "
        "enough for prescriptions' and days-supply windows, transfers in transit and the statistical "
        "detectors' history (min_history_months) and peer months")
    serial_reuse_min_dispensings: int = Field(
        2, description="a pack serial (GS1 AI 21) of one item dispensed this many times, none reversed, is a flag")
    high_score: float = Field(0.8, description="score from which a flag is high severity")
    medium_score: float = Field(0.5, description="score from which a flag is medium severity")


class Fhir(BaseModel):
    """Identifier systems used in FHIR exchange (environment: ``DAWA_FHIR__NAME``). A ministry sets
    them to its registered URIs so that other systems recognise the health card and the codes."""

    patient_system: str = Field("urn:dawa:health-card", description="system of the health card id (Patient "
                                "identifier, when an export is asked for health cards)")
    pseudonym_system: str = Field("urn:dawa:patient-pseudonym", description="system of pseudonymous patient ids "
                                  "(Patient identifier by default)")
    health_card_roles: list[str] = Field(default_factory=list, description="roles that may ask a FHIR export for "
                                         "health cards in the clear (pharmacist, facility_manager); "
                                         "empty = patients always by pseudonym")
    item_system: str = Field("urn:dawa:item", description="system of item codes (Medication.code)")
    facility_system: str = Field("urn:dawa:facility", description="system of facility codes (Location identifier)")
    entry_system: str = Field("urn:dawa:entry", description="system of ledger entry ids (resource identifier)")
    prescription_system: str = Field("urn:dawa:prescription", description="system of prescription ids")
    user_system: str = Field("urn:dawa:user", description="system of user ids (performer, requester)")
    document_system: str = Field("urn:dawa:document", description="system of document numbers (waybills, GRNs)")
    report_system: str = Field("urn:dawa:stock-report", description="system of monthly stock report ids")


class Dhis2(BaseModel):
    """The DHIS2 server monthly figures are pushed to (environment: ``DAWA_DHIS2__NAME``). The
    password or personal access token is set here or in .env, never in code."""

    url: str | None = Field(None, description="DHIS2 base URL (the push posts to URL/api/dataValueSets); "
                                              "empty = no push")
    username: str | None = Field(None, description="DHIS2 user (HTTP basic authentication)")
    password: str | None = Field(None, description="its password")
    token: str | None = Field(None, description="a DHIS2 personal access token, used instead of user and password")
    mapping: str | None = Field(None, description="mapping file (JSON) the scheduled push uses")
    timeout_s: float = Field(120, description="give up on a push after this long")


class WebSettings(BaseModel):
    """The web app (environment: ``DAWA_WEB__NAME``)."""

    host: str = Field("127.0.0.1", description="address `dawa serve` listens on")
    port: int = Field(8000, description="port `dawa serve` listens on")
    session_hours: float = Field(12, description="a login lasts at most this long")
    session_idle_minutes: float = Field(120, description="a login unused for this long ends")
    login_max_failures: int = Field(
        5, description="failed logins for one user name from one address before each further try must wait "
        "(login_backoff_seconds, doubling with each failure)")
    login_backoff_seconds: float = Field(30, description="the first wait after login_max_failures failures")
    login_backoff_max_minutes: float = Field(60, description="the longest wait between tries of one name and address")
    login_max_names_per_ip: int = Field(
        10, description="user names that may fail from one address within the window before it is refused for "
        "names never logged in from there (users who have are not held up: a hospital behind one NAT works on)")
    login_max_failures_per_account: int = Field(
        20, description="failures of one user name from all addresses within the window before it is refused "
        "from addresses it never logged in from")
    login_window_minutes: float = Field(15, description="failed logins count for this long")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="addresses of the reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed (JSON list); empty: none, the connecting address is the client")
    api_token_days: float = Field(90, gt=0, description="a personal API token stops working this long after issue")
    argon2_time_cost: int = Field(3, description="argon2id passes over memory when hashing a password")
    argon2_memory_kib: int = Field(65536, description="argon2id memory per password hash, in KiB")
    argon2_parallelism: int = Field(4, description="argon2id lanes per password hash")


class AlertSettings(BaseModel):
    """Scheduled alerts and their channels (environment: ``DAWA_ALERTS__NAME``). Cron expressions
    have five fields (minute hour day month weekday) and run in ``timezone`` (default: the
    default_timezone). The SMTP password and webhook secret are set here or in .env, never in code."""

    smtp_host: str = Field("127.0.0.1", description="SMTP server that sends alert e-mail")
    smtp_port: int = Field(25, description="its port (587 with STARTTLS, 25 for a local relay)")
    smtp_user: str | None = Field(None, description="login, if the server wants one")
    smtp_password: str | None = Field(None, description="password for smtp_user")
    smtp_from: str = Field("dawa@localhost", description="From: address of alert e-mail")
    smtp_starttls: bool = Field(False, description="upgrade the connection with STARTTLS before sending")
    smtp_timeout_s: float = Field(10, description="give up on an SMTP connection after this long")
    webhook_secret: str | None = Field(
        None, description="key of the X-Dawa-Signature HMAC-SHA256 over each webhook body; webhooks are "
        "not sent unsigned, so none go out until it is set")
    webhook_timeout_s: float = Field(10, description="give up on a webhook request after this long")
    retry_attempts: int = Field(3, ge=1, description="attempts per delivery before it is recorded as failed")
    retry_base_delay_s: float = Field(2.0, ge=0, description="wait before the 2nd attempt; doubles after each")
    base_url: str = Field("http://127.0.0.1:8000", description="address of the web app, for links in messages")
    timezone: str | None = Field(None, description="zone the cron schedules run in; empty = default_timezone")
    scan_cron: str = Field("*/15 * * * *", description="incremental scan and new-flag alerts")
    stock_cron: str = Field("0 6 * * *", description="stockouts, low stock, expiring lots, short counts")
    verify_cron: str = Field("30 2 * * *", description="hash chains and balance drift")
    digest_cron: str = Field("0 7 * * mon", description="weekly digest of what was held for it")
    dhis2_cron: str = Field("0 5 5 * *", description="push last month's figures to DHIS2 (when dhis2.url is set)")
    interval_s: float | None = Field(
        None, description="run every job on this interval instead of its cron (for trials and tests)")
    jobs: list[str] | None = Field(None, description="schedule only these jobs (JSON list); empty = all")
    misfire_grace_s: int = Field(3600, description="a run missed by less than this still runs (once)")
    low_stock_months: float = Field(1.0, description="alert when stock covers fewer months of use than this")
    expiry_days: list[int] = Field([30, 60, 90], description="alert as a lot comes within each of these days of expiry")
    count_lookback_days: int = Field(7, description="short counts recorded this recently are alerted on")
    flag_max_age_days: int = Field(7, description="flags older than this when first seen are not announced")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DAWA_", env_file=".env", extra="ignore",
                                      env_nested_delimiter="__")

    database_url: str = Field(
        default="sqlite:///dawa.sqlite",
        description="SQLAlchemy URL. Default: a SQLite file in the working folder. "
        "PostgreSQL: postgresql+psycopg://user@host:5432/db",
    )
    secret_key: str | None = Field(
        default=None, description="Signs sessions. `dawa init` writes a fresh one to .env if absent."
    )
    patient_id_key: str | None = Field(
        default=None, description="Keys pseudonymous patient ids. Generated like secret_key."
    )
    default_timezone: str = Field(
        default="Africa/Tripoli", description="Zone used to show times of facilities that name none."
    )
    sqlite_busy_timeout_s: float = Field(
        default=30.0,
        description="How long a SQLite writer waits for another to finish before giving up.",
    )
    witness_key_file: Path | None = Field(
        default=None, description="Ed25519 private key (PEM) the scheduled verify job signs the chain heads "
        "with; keep it outside the database, readable only by the job's account (`dawa ledger witness-key`)")
    witness_public_key: Path | None = Field(
        default=None, description="its public key, for `dawa ledger verify --against` a signed heads file")
    witness_dir: Path | None = Field(
        default=None, description="folder outside the database where each signed heads file is written")
    amc_months: int = Field(
        default=3, description="Months of history averaged for average monthly consumption."
    )
    ledger_catch_up_days: int | None = Field(
        default=365, ge=1,
        description="An entry posted through the API or a page more than this many days after it happened "
        "needs a reason (stock.rules' time rule); empty: no limit. Imports of history are not held to it.",
    )
    detection: Detection = Field(default_factory=Detection)
    web: WebSettings = Field(default_factory=WebSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    fhir: Fhir = Field(default_factory=Fhir)
    dhis2: Dhis2 = Field(default_factory=Dhis2)

    def today(self, zone: str | None = None) -> date:
        """The date stock is reckoned "as of": today in ``zone`` (a facility's), else in the default
        zone. The pages and the CLI's summaries ask here, so they agree on a month's average use."""
        return datetime.now(ZoneInfo(zone or self.default_timezone)).date()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


SECRET_NAMES = ("DAWA_SECRET_KEY", "DAWA_PATIENT_ID_KEY")


def ensure_secrets(env_file: Path) -> list[str]:
    """Append freshly generated secrets to ``env_file`` for any not set there or in the environment.

    A fresh install must never run on a secret that ships with the code, so each install makes its
    own. Returns the names that were written.
    """
    settings = Settings(_env_file=env_file)
    present = {"DAWA_SECRET_KEY": settings.secret_key, "DAWA_PATIENT_ID_KEY": settings.patient_id_key}
    missing = [name for name in SECRET_NAMES if not present[name]]
    if missing:
        with env_file.open("a", encoding="utf-8") as fh:
            for name in missing:
                fh.write(f"{name}={secrets.token_urlsafe(32)}\n")
        get_settings.cache_clear()
    return missing
