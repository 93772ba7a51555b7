"""chat/frame_budget.py: large frames take slots per address and per process, and an
address's large-frame bytes are paced; a socket that must wait is paused, then resumed
in its turn. The budget's logic alone, on a clock and timers of the test's."""

from chat.frame_budget import PACE_STEP, SLOW_CHECK, FrameBudget, Reader


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, object]] = []

    def call_later(self, delay: float, callback) -> object:
        self.timers.append((self.now + delay, callback))
        return callback

    def advance(self, seconds: float) -> None:
        """Move on, firing every timer that falls due, in order."""
        until = self.now + seconds
        while self.timers and min(t for t, _ in self.timers) <= until:
            due, callback = min(self.timers, key=lambda timer: timer[0])
            self.timers.remove((due, callback))
            self.now = due
            callback()
        self.now = until


class Socket:
    def __init__(self, budget: FrameBudget, address: str) -> None:
        self.paused = False
        self.closed = False
        self.reader = Reader(address, self.pause, self.resume, self.close)
        self.budget = budget

    def close(self) -> None:
        assert not self.closed
        self.closed = True

    def pause(self) -> None:
        assert not self.paused
        self.paused = True

    def resume(self) -> None:
        assert self.paused
        self.paused = False

    def read(self, nbytes: int) -> bool:
        return self.budget.take(self.reader, nbytes)


MIB = 1024 * 1024


def make(
    per_address=2, per_process=16, per_minute=60 * MIB, burst=4 * MIB, min_rate=0, grace=10.0
) -> tuple[FrameBudget, Clock]:
    clock = Clock()
    budget = FrameBudget(
        per_address=per_address,
        per_process=per_process,
        bytes_per_minute=per_minute,
        burst=burst,
        min_rate=min_rate,
        grace=grace,
        clock=lambda: clock.now,
        call_later=clock.call_later,
    )
    return budget, clock


def test_an_address_holds_at_most_its_slots_and_the_next_socket_waits_its_turn():
    budget, _ = make()
    one, two, three = (Socket(budget, "10.0.0.1") for _ in range(3))
    assert one.read(300_000) and two.read(300_000)
    assert not three.read(300_000) and three.paused
    # Another address is not held up by this one.
    assert Socket(budget, "10.0.0.2").read(300_000)
    budget.done(one.reader)
    assert not three.paused and three.reader.slot and not one.reader.slot
    assert three.read(100_000)  # reading on within its slot


def test_the_process_holds_at_most_its_slots_whatever_the_addresses():
    budget, _ = make(per_process=3)
    sockets = [Socket(budget, f"10.0.1.{n}") for n in range(5)]
    assert [s.read(300_000) for s in sockets] == [True, True, True, False, False]
    budget.done(sockets[1].reader)
    assert not sockets[3].paused and sockets[4].paused  # oldest first
    budget.forget(sockets[0].reader)  # a socket that closes gives its slot back
    assert not sockets[4].paused
    assert budget.held == 3


def test_a_closed_waiting_socket_is_never_resumed():
    budget, _ = make(per_address=1)
    one, two = Socket(budget, "10.0.0.1"), Socket(budget, "10.0.0.1")
    one.read(300_000)
    two.read(300_000)
    budget.forget(two.reader)
    budget.done(one.reader)
    assert two.paused and budget.held == 0 and not budget.slots and not budget.waiting


def test_a_socket_paused_by_the_read_that_ended_its_frame_reads_on_once_it_is_handled():
    # The read that pauses a socket is still parsed: when it held the frame's last
    # bytes, the app handles that frame while the socket waits. Nothing large is pending
    # then: the socket must read on and hold no slot. (Resumed later, each took a slot
    # it never gave back, and a third socket of the address stayed unread for good.)
    budget, clock = make(per_address=2, per_minute=60 * MIB, burst=1 * MIB)
    a, b, c = (Socket(budget, "10.0.0.1") for _ in range(3))
    assert not a.read(2 * MIB) and a.paused  # past the burst: paced
    assert not b.read(300_000) and b.paused  # a slot, but no pace left
    assert not c.read(300_000) and c.paused  # no slot
    for socket in (a, b, c):  # each frame was whole in that read: the app handles it
        budget.done(socket.reader)
    assert not any(s.paused for s in (a, b, c))
    assert budget.held == 0 and not budget.slots and not budget.waiting
    clock.advance(10)
    assert not any(s.paused for s in (a, b, c)) and budget.held == 0
    # The address's next large frames have both slots again.
    assert a.read(300_000) and b.read(300_000)
    assert not c.read(300_000) and c.paused


def test_an_address_bytes_are_paced_after_its_burst():
    budget, clock = make(per_minute=60 * MIB, burst=4 * MIB)  # 1 MiB a second
    sender = Socket(budget, "10.0.0.1")
    assert sender.read(4 * MIB)  # the burst: straight through
    assert not sender.read(2 * MIB) and sender.paused  # 2 MiB owed: two seconds
    clock.advance(1.5)
    assert sender.paused
    clock.advance(0.6)
    assert not sender.paused
    # The pace belongs to the address: its other sockets wait for it too.
    other = Socket(budget, "10.0.0.1")
    assert not other.read(1 * MIB) and other.paused
    clock.advance(1.1)
    assert not other.paused


def test_a_paced_socket_waits_at_least_a_step_so_it_reads_in_steps():
    budget, clock = make(per_minute=60 * MIB, burst=1 * MIB)
    sender = Socket(budget, "10.0.0.1")
    sender.read(1 * MIB + 10)  # owes 10 bytes: microseconds, but waits a step
    assert sender.paused
    clock.advance(PACE_STEP / 2)
    assert sender.paused
    clock.advance(PACE_STEP)
    assert not sender.paused


def test_an_address_that_stops_sending_is_forgotten_once_its_pace_is_full():
    budget, clock = make(per_minute=60 * MIB, burst=1 * MIB)
    sender = Socket(budget, "10.0.0.1")
    sender.read(512 * 1024)
    budget.done(sender.reader)
    clock.advance(1)
    Socket(budget, "10.0.0.2").read(300_000)  # any later read looks at its own address only
    assert "10.0.0.1" in budget.paces
    assert budget._tokens("10.0.0.1") == 1 * MIB
    assert "10.0.0.1" not in budget.paces


def test_many_addresses_leave_only_the_paces_still_refilling(monkeypatch):
    monkeypatch.setattr("chat.frame_budget.MAX_PACES", 10)
    budget, clock = make(per_minute=60 * MIB, burst=1 * MIB)
    for n in range(10):
        sender = Socket(budget, f"10.0.2.{n}")
        sender.read(300_000)
        budget.done(sender.reader)
    clock.advance(1)  # all of them full again
    Socket(budget, "10.0.3.1").read(300_000)
    assert list(budget.paces) == ["10.0.3.1"]


# --- Slow holders (LARGE_FRAME_MIN_BYTES_PER_SECOND, LARGE_FRAME_GRACE_SECONDS) ---------

KIB = 1024


def slow_budget(per_process=2) -> tuple[FrameBudget, Clock]:
    """Two process slots; a holder read for 10 s at under 64 KiB/s gives way."""
    return make(per_process=per_process, per_minute=600 * MIB, burst=100 * MIB, min_rate=64 * KIB)


def trickle(socket: Socket, clock: Clock, seconds: int, per_second: int) -> None:
    for _ in range(seconds):
        clock.advance(1)
        if not socket.closed:
            socket.read(per_second)


def test_a_trickling_holder_gives_its_slot_to_an_upload_that_waits_for_one():
    """Two addresses announcing large frames and trickling them held both slots, and
    every other upload of the process waited for as long as they liked."""
    budget, clock = slow_budget()
    slow = [Socket(budget, f"10.0.4.{n}") for n in range(2)]
    for socket in slow:
        assert socket.read(300 * KIB)
    trickle(slow[0], clock, 12, 1 * KIB)  # 312 KiB in 12 s: 26 KiB/s
    honest = Socket(budget, "10.0.5.1")
    honest.read(300 * KIB)  # no slot free: it waits, and at once
    # the slowest holder read for the grace is closed, and its slot is the waiting one's.
    assert slow[1].closed and not slow[0].closed
    assert not honest.paused and honest.reader.slot and not slow[1].reader.slot
    assert budget.held == 2 and not budget.waiting


def test_a_slow_upload_with_no_one_waiting_takes_the_time_it_needs():
    budget, clock = slow_budget()
    slow = Socket(budget, "10.0.4.1")
    assert slow.read(300 * KIB)
    trickle(slow, clock, 600, 4 * KIB)
    assert not slow.closed and slow.reader.slot
    # One waiting on its own address's slots is not the process's contention.
    budget2, clock2 = make(per_address=1, per_process=2, min_rate=64 * KIB)
    first, second = Socket(budget2, "10.0.4.1"), Socket(budget2, "10.0.4.1")
    first.read(300 * KIB)
    assert not second.read(300 * KIB)
    trickle(first, clock2, 60, 1 * KIB)
    assert not first.closed and second.paused


def test_holders_read_for_less_than_the_grace_or_fast_enough_keep_their_slots():
    budget, clock = slow_budget()
    young, fast = Socket(budget, "10.0.4.1"), Socket(budget, "10.0.4.2")
    young.read(300 * KIB)
    clock.advance(5)
    fast.read(300 * KIB)
    waiting = Socket(budget, "10.0.5.1")
    assert not waiting.read(300 * KIB)
    for _ in range(4):  # young: 5 s, 60 KiB/s so far; then its grace passes, too slow
        clock.advance(1)
        fast.read(200 * KIB)
    assert not young.closed and waiting.paused
    clock.advance(1)  # young read for 10 s: 30 KiB/s
    fast.read(200 * KIB)
    clock.advance(SLOW_CHECK)
    assert young.closed and not fast.closed and not waiting.paused


def test_time_waiting_on_the_budget_is_not_held_against_the_sender():
    budget, clock = make(per_process=2, per_minute=6 * MIB, burst=1 * MIB, min_rate=64 * KIB)  # 100 KiB/s
    paced, other = Socket(budget, "10.0.4.1"), Socket(budget, "10.0.4.2")
    assert not paced.read(2 * MIB) and paced.paused  # 1 MiB owed: about ten seconds of pace
    other.read(300 * KIB)
    waiting = Socket(budget, "10.0.5.1")
    assert not waiting.read(300 * KIB)
    clock.advance(9)
    assert paced.paused and not paced.closed  # 2 MiB in no reading time at all
    trickle(other, clock, 12, 1 * KIB)
    assert other.closed and not paced.closed


def test_a_frame_all_in_is_not_judged_while_the_app_handles_it():
    budget, clock = slow_budget()
    handled, other = Socket(budget, "10.0.4.1"), Socket(budget, "10.0.4.2")
    handled.read(300 * KIB)
    other.read(300 * KIB)
    budget.frame_in(handled.reader)  # whole; the app decodes, checks and stores it
    clock.advance(30)
    waiting = Socket(budget, "10.0.5.1")
    assert not waiting.read(300 * KIB)
    assert other.closed and not handled.closed and handled.reader.slot
    # The app asks for its next frame with a large part of it in already: from now, it
    # arrives, and is judged as any other.
    budget.next_frame(handled.reader)
    third = Socket(budget, "10.0.5.2")
    assert not third.read(300 * KIB)
    clock.advance(11)
    assert handled.closed and not third.paused


def test_the_slowest_holder_goes_first_and_only_as_many_as_wait():
    budget, clock = slow_budget(per_process=3)
    holders = [Socket(budget, f"10.0.4.{n}") for n in range(3)]
    for holder in holders:
        holder.read(300 * KIB)
    clock.advance(10)
    holders[0].read(100 * KIB)  # 40 KiB/s
    holders[2].read(200 * KIB)  # 50 KiB/s; holders[1]: 30 KiB/s
    waiting = Socket(budget, "10.0.5.1")
    waiting.read(300 * KIB)
    assert [h.closed for h in holders] == [False, True, False] and not waiting.paused
    clock.advance(60)
    assert [h.closed for h in holders] == [False, True, False]


def test_a_socket_given_a_slot_after_waiting_is_judged_from_then_on():
    """The review's attack on the rule: sockets that wait for a slot, then send nothing
    once given one. Their clock never started (no bytes came once they held a slot), so
    they were never judged, and the upload after them waited for ever."""
    budget, clock = slow_budget()
    tricklers = [Socket(budget, f"10.0.4.{n}") for n in (1, 2)]
    for trickler in tricklers:
        trickler.read(300 * KIB)
    silent = [Socket(budget, f"10.0.6.{n}") for n in (1, 2)]
    for socket in silent:
        assert not socket.read(300 * KIB)  # waiting for a process slot
    clock.advance(11)  # the tricklers give way to them
    assert all(t.closed for t in tricklers) and all(s.reader.slot and not s.paused for s in silent)
    honest = Socket(budget, "10.0.5.1")
    assert not honest.read(300 * KIB)
    clock.advance(11)  # the silent ones: read for the grace, nothing since their slot
    assert silent[0].closed and not honest.paused and honest.reader.slot
