"""Locust users that speak the real protocol: drivers on the driver WebSocket, riders on REST and
the rider WebSocket.

Ride time is compressed by `--time-scale` (a 10-minute trip lasts 30 s at 0.05) so a run of a
few minutes sees whole rides; positions move along the straight line at the matching speed.
"""

from __future__ import annotations

import itertools
import json
import random
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

import gevent
from locust import FastHttpUser, constant, task
from locust.exception import StopUser

from loadtests import kpi
from loadtests.trip_feed import DemandFeed, between, step_towards
from loadtests.ws import Closed, Socket

CRUISE_SPEED_MS = 7.0  # ~25 km/h while idle


class Shared:
    """What all users of this Locust process share, set up by the locustfile's `init` hook."""

    feed: DemandFeed | None = None
    accounts: ClassVar[dict[str, list[dict[str, Any]]]] = {"rider": [], "driver": []}
    password = ""
    next_account: ClassVar[dict[str, itertools.count[int]]] = {}
    options: Any = None
    started: ClassVar[dict[str, int]] = {"rider": 0, "driver": 0}

    @classmethod
    def load_credentials(cls, path: Path) -> None:
        document = json.loads(path.read_text())
        cls.accounts = {"rider": document["riders"], "driver": document["drivers"]}
        cls.password = document["password"]
        cls.next_account = {"rider": itertools.count(), "driver": itertools.count()}

    returned: ClassVar[dict[str, list[dict[str, Any]]]] = {"rider": [], "driver": []}

    @classmethod
    def take_account(cls, role: str) -> dict[str, Any]:
        if cls.returned[role]:
            return cls.returned[role].pop()
        pool = cls.accounts[role]
        index = next(cls.next_account[role])
        if index >= len(pool):
            raise StopUser(f"only {len(pool)} seeded {role}s; seed more with `coop-dispatch seed`")
        return pool[index]

    @classmethod
    def give_back(cls, role: str, account: dict[str, Any]) -> None:
        """Locust replaces a user that stopped; its replacement reuses the account."""
        cls.returned[role].append(account)


def _option(name: str) -> Any:
    return getattr(Shared.options, name)


class CoopUser(FastHttpUser):
    abstract = True
    role = ""
    wait_time = constant(0)
    _spread = itertools.count()
    # Set by each role's on_start.
    account: dict[str, Any]
    headers: dict[str, str]
    socket: Socket

    def __init__(self, environment: Any) -> None:
        # `--hosts a,b`: users are spread round-robin over several API processes.
        hosts = [h for h in (getattr(Shared.options, "hosts", "") or "").split(",") if h]
        if hosts:
            self.host = hosts[next(CoopUser._spread) % len(hosts)]
        super().__init__(environment)

    def login(self) -> str:
        account = Shared.take_account(self.role)
        self.account = account
        Shared.started[self.role] += 1
        if account.get("token") and not _option("real_login"):
            return str(account["token"])
        with self.client.post(
            "/v1/auth/token",
            data={"username": account["email"], "password": Shared.password},
            name="/v1/auth/token",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"login failed: {response.status_code}")
                raise StopUser()
            return str(response.json()["access_token"])

    def connect_or_give_up(self, attempts: int = 5) -> None:
        """An overloaded server refuses or times out handshakes: back off and retry, as an app
        would, before giving the account back and stopping."""
        for attempt in range(attempts):
            if self.socket.connect():
                return
            gevent.sleep(random.uniform(1, 2) * 2**attempt)
        Shared.give_back(self.role, self.account)
        raise StopUser()

    def http(self, method: str, path: str, name: str, **kwargs: Any) -> Any:
        """A REST call that counts 5xx for the thresholds; returns the response."""
        with self.client.request(
            method, path, name=name, headers=self.headers, catch_response=True, **kwargs
        ) as response:
            if response.status_code >= 500:
                kpi.ledger.server_errors += 1
                response.failure(f"HTTP {response.status_code}")
            elif response.status_code >= 400:
                response.failure(f"HTTP {response.status_code}: {_error_code(response)}")
            return response

    def api_url(self) -> str:
        if not self.host:
            raise RuntimeError("no API host: pass --host or --hosts")
        return self.host


def _error_code(response: Any) -> str:
    try:
        return str(response.json().get("error"))
    except Exception:
        return "?"


class DriverUser(CoopUser):
    """Goes online, streams positions, answers offers, drives rides to completion."""

    role = "driver"
    weight = 4

    def on_start(self) -> None:
        token = self.login()
        self.headers = {"Authorization": f"Bearer {token}"}
        feed = Shared.feed
        assert feed is not None
        self.position = feed.random_point()
        self.waypoint = feed.random_point()
        self.leg: tuple[tuple[float, float], tuple[float, float], float, float] | None = None
        self.offer: dict[str, Any] | None = None
        self.offer_received = 0.0
        self.decide_at = 0.0
        self.accept_sent = 0.0
        self.ride: dict[str, Any] | None = None
        self.next_step_at = 0.0
        self.acks: dict[int, float] = {}
        self.ack_ids = itertools.count(1)
        self.socket = Socket(self.api_url(), "/v1/driver/ws", token, "driver ws")
        self.connect_or_give_up()
        self.go_online()
        self.streamer = gevent.spawn(self._stream_positions)

    def on_stop(self) -> None:
        streamer = getattr(self, "streamer", None)
        if streamer is not None:
            streamer.kill(block=False)
        # Leave no ride half-driven for the next run: finish it at once.
        for _ in range(3):
            if getattr(self, "ride", None) is None:
                break
            self.step_ride()
        socket = getattr(self, "socket", None)
        if socket is not None:
            socket.send({"type": "status", "status": "offline"})
            socket.close()

    def go_online(self) -> None:
        self.socket.send({"type": "status", "status": "online"})
        self.send_position()

    def send_position(self) -> None:
        ack_id = next(self.ack_ids)
        self.acks[ack_id] = time.monotonic()
        lat, lng = self.position
        self.socket.send(
            {"type": "location", "lat": round(lat, 6), "lng": round(lng, 6), "id": ack_id}
        )

    def _stream_positions(self) -> None:
        interval = _option("location_interval")
        gevent.sleep(random.uniform(0, interval))
        while True:
            self._move(interval)
            if self.socket.connected:
                self.send_position()
            if len(self.acks) > 1000:  # acks lost to a reconnect
                self.acks.clear()
            gevent.sleep(interval)

    def _move(self, interval: float) -> None:
        if self.leg is not None:
            origin, target, leg_start, leg_s = self.leg
            self.position = between(origin, target, (time.monotonic() - leg_start) / leg_s)
            return
        self.position = step_towards(self.position, self.waypoint, CRUISE_SPEED_MS * interval)
        if self.position == self.waypoint and Shared.feed is not None:
            self.waypoint = Shared.feed.random_point()

    @task
    def drive(self) -> None:
        """One turn: handle what arrived (up to a second), then whatever is due."""
        try:
            message = self.socket.inbox.get(timeout=self._until_due())
        except gevent.queue.Empty:
            message = None
        if message is Closed:
            if self.socket.reconnect():
                self.go_online()
            return
        if message is not None:
            self.handle(message)
        self.act_when_due()

    def _until_due(self) -> float:
        deadlines = [time.monotonic() + 1.0]
        if self.offer is not None and not self.accept_sent:
            deadlines.append(self.decide_at)
        if self.ride is not None:
            deadlines.append(self.next_step_at)
        return max(0.0, min(deadlines) - time.monotonic())

    def handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "location.ack":
            ack_id = message.get("id")
            sent = self.acks.pop(ack_id, None) if isinstance(ack_id, int) else None
            if sent is not None:
                kpi.fire(kpi.LOCATION_ACCEPTED, sent)
        elif kind == "offer":
            self.on_offer(message)
        elif kind == "status":
            pending = message.get("pending_offer")
            if pending and self.offer is None:
                self.on_offer({**pending, "offer_id": pending.get("id", pending.get("offer_id"))})
            if message.get("active_ride_id") and self.ride is None:
                self.resume_ride()
        elif (
            kind == "accepted" and self.offer and message.get("offer_id") == self.offer["offer_id"]
        ):
            kpi.fire(kpi.OFFER_ACCEPTED, self.offer_received)
            kpi.fire("accept", self.accept_sent, request_type=kpi.WS)
            kpi.ledger.offers["accepted"] += 1
            self.start_ride(self.offer, message.get("ride") or {})
            self.offer = None
        elif kind in ("offer.expired", "offer.withdrawn"):
            if self.offer and message.get("offer_id") == self.offer["offer_id"]:
                outcome = kind.split(".")[1]
                kpi.fire(kpi.OFFER_ACCEPTED, self.offer_received, failure=outcome)
                kpi.ledger.offers[outcome] += 1
                self.offer = None
        elif kind == "error" and message.get("for") == "accept" and self.offer:
            kpi.fire(
                "accept", self.accept_sent, request_type=kpi.WS, failure=str(message.get("error"))
            )
            kpi.fire(kpi.OFFER_ACCEPTED, self.offer_received, failure=str(message.get("error")))
            kpi.ledger.offers["accept failed"] += 1
            self.offer = None
        elif kind == "ride.cancelled" and self.ride and message.get("ride_id") == self.ride["id"]:
            self.end_ride()

    def on_offer(self, offer: dict[str, Any]) -> None:
        kpi.ledger.offered(str(offer.get("ride_id")))
        if self.offer is not None or self.ride is not None:
            return
        self.offer = offer
        self.offer_received = time.monotonic()
        self.accept_sent = 0.0
        delay = _option("offer_delay")
        self.decide_at = self.offer_received + random.uniform(0.5 * delay, 1.5 * delay)

    def act_when_due(self) -> None:
        now = time.monotonic()
        if self.offer is not None and not self.accept_sent and now >= self.decide_at:
            offer_id = self.offer["offer_id"]
            if random.random() < _option("accept_probability"):
                self.accept_sent = now
                self.socket.send({"type": "accept", "offer_id": offer_id})
            else:
                self.socket.send({"type": "decline", "offer_id": offer_id})
                kpi.fire(kpi.OFFER_ACCEPTED, self.offer_received, failure="declined")
                kpi.ledger.offers["declined"] += 1
                self.offer = None
        elif self.offer is not None and self.accept_sent and now - self.accept_sent > 15:
            kpi.fire("accept", self.accept_sent, request_type=kpi.WS, failure="no answer")
            self.offer = None
        if self.ride is not None and now >= self.next_step_at:
            self.step_ride()

    def _scaled(self, seconds: float) -> float:
        return min(max(seconds * float(_option("time_scale")), 1.0), 60.0)

    def start_ride(self, offer: dict[str, Any], ride: dict[str, Any]) -> None:
        pickup = _point(offer.get("pickup")) or self.position
        dropoff = _point(offer.get("dropoff")) or pickup
        to_pickup = self._scaled(float(offer.get("pickup_eta_s") or 120))
        self.ride = {
            "id": str(offer.get("ride_id") or ride.get("id")),
            "next": "arrive",
            "pickup": pickup,
            "dropoff": dropoff,
            "duration_s": float(offer.get("duration_s") or 600),
        }
        self.leg = (self.position, pickup, time.monotonic(), to_pickup)
        self.next_step_at = time.monotonic() + to_pickup

    def resume_ride(self) -> None:
        """After a reconnect or a previous run: finish whatever ride the server says we hold."""
        response = self.http("GET", "/v1/driver/rides/current", "/v1/driver/rides/current")
        if response.status_code != 200 or not response.json():
            return
        ride = response.json()
        following = {"matched": "arrive", "arrived": "start", "in_progress": "complete"}
        step = following.get(ride.get("status"))
        if step is None:
            return
        pickup = _point(ride.get("pickup")) or self.position
        self.ride = {
            "id": str(ride["id"]),
            "next": step,
            "pickup": pickup,
            "dropoff": _point(ride.get("dropoff")) or pickup,
            "duration_s": float(ride.get("duration_s") or 600),
        }
        self.next_step_at = time.monotonic()

    def step_ride(self) -> None:
        assert self.ride is not None
        ride_id, step = self.ride["id"], self.ride["next"]
        response = self.http(
            "POST", f"/v1/driver/rides/{ride_id}/{step}", f"/v1/driver/rides/[id]/{step}"
        )
        if response.status_code != 200:
            self.end_ride()
            return
        now = time.monotonic()
        if step == "arrive":
            self.position = self.ride["pickup"]
            self.leg = None
            self.ride["next"] = "start"
            self.next_step_at = now + self._scaled(60)
        elif step == "start":
            ride_s = self._scaled(self.ride["duration_s"])
            self.leg = (self.position, self.ride["dropoff"], now, ride_s)
            self.ride["next"] = "complete"
            self.next_step_at = now + ride_s
        else:
            self.position = self.ride["dropoff"]
            self.end_ride()

    def end_ride(self) -> None:
        self.ride = None
        self.leg = None


class RiderUser(CoopUser):
    """Takes the next trip of the demand feed when it is due: quote, request, follow, sometimes
    cancel; one ride at a time."""

    role = "rider"
    weight = 1

    def on_start(self) -> None:
        token = self.login()
        self.headers = {"Authorization": f"Bearer {token}"}
        self.token = token
        self.socket = Socket(self.api_url(), "/v1/rider/ws", token, "rider ws")
        self.connect_or_give_up()
        self.cancel_leftovers()

    def cancel_leftovers(self) -> None:
        """A ride left open by an earlier run would refuse this rider's requests."""
        response = self.http("GET", "/v1/rider/rides?limit=5", "/v1/rider/rides")
        if response.status_code != 200:
            return
        for ride in response.json():
            if ride.get("status") in ("requested", "matched", "arrived"):
                path = f"/v1/rider/rides/{ride['id']}/cancel"
                self.http("POST", path, "/v1/rider/rides/[id]/cancel (leftover)", json={})

    def on_stop(self) -> None:
        socket = getattr(self, "socket", None)
        if socket is not None:
            socket.close()

    @task
    def take_a_ride(self) -> None:
        feed = Shared.feed
        assert feed is not None
        trip, due = feed.take()
        gevent.sleep(max(0.0, due - time.monotonic()))
        pickup = {"lat": trip.pickup[0], "lng": trip.pickup[1]}
        dropoff = {"lat": trip.dropoff[0], "lng": trip.dropoff[1]}
        quote = self.http(
            "POST",
            "/v1/rider/quotes",
            "/v1/rider/quotes",
            json={"pickup": pickup, "dropoff": dropoff},
        )
        if quote.status_code != 201:
            kpi.ledger.request_failures += 1
            return
        sent = time.monotonic()
        key = {"Idempotency-Key": uuid.uuid4().hex}
        with self.client.post(
            "/v1/rider/rides",
            json={"quote_id": quote.json()["id"]},
            headers=self.headers | key,
            name="/v1/rider/rides",
            catch_response=True,
        ) as response:
            if response.status_code != 201:
                if response.status_code >= 500:
                    kpi.ledger.server_errors += 1
                response.failure(f"HTTP {response.status_code}: {_error_code(response)}")
                kpi.ledger.request_failures += 1
                return
            ride_id = str(response.json()["id"])
        kpi.ledger.requested(ride_id, self.token, sent)
        self.follow(ride_id, sent)

    def follow(self, ride_id: str, sent: float) -> None:
        cancel_after = None
        if random.random() < _option("cancel_probability"):
            cancel_after = sent + random.uniform(1.0, 3 * _option("offer_delay") + 5.0)
        deadline = sent + _option("ride_timeout")
        while time.monotonic() < deadline:
            now = time.monotonic()
            wait = min(deadline, cancel_after or deadline) - now
            try:
                message = self.socket.inbox.get(timeout=max(0.0, wait))
            except gevent.queue.Empty:
                message = None
            if message is Closed:
                self.socket.reconnect()
                continue
            if cancel_after is not None and time.monotonic() >= cancel_after:
                cancel_after = None
                self.http(
                    "POST",
                    f"/v1/rider/rides/{ride_id}/cancel",
                    "/v1/rider/rides/[id]/cancel",
                    json={"reason": "load test"},
                )
            if message is None or message.get("ride_id") != ride_id:
                continue
            status = _RIDER_EVENTS.get(str(message.get("type")))
            if status is None:
                continue
            kpi.ledger.status(ride_id, status)
            if status in kpi.TERMINAL:
                return
        kpi.fire(kpi.RIDE_OUTCOME, sent, failure="no terminal event in time")


_RIDER_EVENTS = {
    "ride.matched": "matched",
    "ride.arrived": "arrived",
    "ride.started": "in_progress",
    "ride.completed": "completed",
    "ride.cancelled": "cancelled",
    "ride.unfulfilled": "unfulfilled",
}


def _point(value: Any) -> tuple[float, float] | None:
    if isinstance(value, dict) and "lat" in value and "lng" in value:
        return float(value["lat"]), float(value["lng"])
    return None
