"""Settings, read from the environment (prefix COOP_)."""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COOP_", extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/coop_dispatch"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # A statement that hears nothing back for this long fails (503) instead of hanging forever
    # on a half-open connection.
    database_command_timeout_s: float = 30.0
    database_connect_timeout_s: float = 5.0
    # How long a saved Idempotency-Key answer is replayed; older keys are purged by dispatchers.
    idempotency_key_ttl_s: float = 86_400.0
    region: str = "nyc"

    jwt_secret: str = Field(default="change-me-in-production-please-32b", min_length=32)
    jwt_issuer: str = "coop-dispatch"
    jwt_audience: str = "coop-dispatch-apps"
    access_token_ttl_s: int = 900
    # Failed logins per minute from one address for one account, and for one account from all
    # addresses together (higher, so strangers cannot lock its owner out).
    login_attempts_per_minute: int = 10
    login_account_attempts_per_minute: int = 100
    # Sign-ups and quotes per client address (generous: carriers put many phones behind one
    # address) and per email or rider.
    register_per_address_per_hour: int = 20
    register_per_email_per_hour: int = 5
    quotes_per_address_per_minute: int = 300
    quotes_per_rider_per_minute: int = 30

    # Proxies whose X-Forwarded-For names the client (comma-separated addresses or networks,
    # "*" for any), given to uvicorn; unset: uvicorn's FORWARDED_ALLOW_IPS, else 127.0.0.1. The
    # per-address budgets count the client this yields.
    forwarded_allow_ips: str | None = None

    # Larger request bodies are refused (413) before they are read; ours are a few hundred bytes.
    max_request_body_bytes: int = Field(default=65_536, ge=1024)

    # Phones written without a country code are read as this country's (ISO 3166 code).
    phone_default_region: str = "US"

    currency: str = "USD"
    quote_ttl_s: int = 300
    eta_speed_kmh: float = 25.0
    eta_circuity: float = 1.3

    batch_interval_s: float = 2.0
    offer_ttl_s: float = 15.0
    request_timeout_s: float = 120.0
    driver_silence_s: float = 30.0
    radius_steps_m: str = "0:3000,20:6000,40:10000"
    max_pickup_eta_s: int = 1800
    fairness_weight: float = 0.0
    require_membership_to_drive: bool = False

    # Bylaws: fractions are written "1/2", "2/3" or "0.5"; windows in seconds.
    governance_quorum: str = "1/2"
    governance_fare_threshold: str = "1/2"
    governance_commission_threshold: str = "2/3"
    governance_min_voting_s: int = 86_400
    governance_max_voting_s: int = 14 * 86_400
    governance_max_commission_rate: str = "0.25"
    governance_max_commission_cap_cents: int = 2_500
    governance_max_fare_field_cents: int = 10_000
    # How far ahead a proposal may open, and take effect after it closes: a passed proposal
    # effective in 9999 would hold every later one behind it (they take effect in close order).
    governance_max_schedule_ahead_s: int = Field(default=90 * 86_400, ge=0)
    governance_max_effective_delay_s: int = Field(default=90 * 86_400, ge=0)
    governance_max_open_proposals_per_member: int = Field(default=3, ge=1)
    # Impact previews show per-driver figures (the median driver's earnings) only for at least
    # this many drivers, so a small window does not expose one driver's pay.
    governance_min_impact_drivers: int = Field(default=5, ge=1)

    ws_max_frame_bytes: int = 4096
    ws_heartbeat_s: float = 20.0
    ws_send_queue: int = 256
    ws_max_connections_per_user: int = 3
    ws_messages_per_second: int = 20
    ws_allowed_origins: str = ""
    location_flush_ms: float = 0.0
    # Positions implying a faster move than this (plus the jitter) are refused: 70 m/s = 252 km/h.
    location_max_speed_mps: float = 70.0
    location_jitter_m: float = 100.0
    # A position outside every service area reloads the areas, at most this often.
    service_area_reload_s: float = 1.0
    # A ride completed farther than this from its dropoff is flagged for operators (not refused).
    completion_max_distance_m: float = 1000.0
    gc_freeze: bool = True

    dispatcher_metrics_host: str = "127.0.0.1"
    dispatcher_metrics_port: int = 9108
    # `/metrics` shows live business figures: served only to `Authorization: Bearer <token>`
    # (Prometheus' `authorization` / `bearer_token_file`). Empty: the API does not serve it, and
    # a dispatcher serves its own only on a loopback address.
    metrics_token: str = ""

    @field_validator("database_url")
    @classmethod
    def _plain_postgres(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgresql+asyncpg://", "postgres://")):
            raise ValueError("COOP_DATABASE_URL must be a postgresql:// URL")
        return value

    @field_validator("metrics_token")
    @classmethod
    def _long_token(cls, value: str) -> str:
        if value and len(value) < 16:
            raise ValueError("COOP_METRICS_TOKEN needs at least 16 characters")
        return value

    @field_validator(
        "governance_quorum",
        "governance_fare_threshold",
        "governance_commission_threshold",
        "governance_max_commission_rate",
    )
    @classmethod
    def _share(cls, value: str) -> str:
        if not 0 <= Fraction(value.strip()) <= 1:
            raise ValueError("must be a share between 0 and 1, like 1/2, 2/3 or 0.25")
        return value.strip()

    @property
    def async_database_url(self) -> str:
        rest = self.database_url.split("://", 1)[1]
        return f"postgresql+asyncpg://{rest}"

    @property
    def radius_schedule_m(self) -> tuple[tuple[float, float], ...]:
        steps = []
        for part in self.radius_steps_m.split(","):
            after_s, radius_m = part.split(":")
            steps.append((float(after_s), float(radius_m)))
        return tuple(sorted(steps))


@lru_cache
def get_settings() -> Settings:
    return Settings()
