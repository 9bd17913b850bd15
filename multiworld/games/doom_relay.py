"""The UDP switch between a ViZDoom netgame's engines, run by the parent (:mod:`doom_players`).

Why it exists: ZDoom's peer-to-peer netcode lets a joiner (every player but the host) adapt its
clock to the host's. In ``NetUpdate`` a joiner that finds the host's tic command already in its
socket when it has just built its own builds one extra command (``gametime--``), so from then on
it builds the command for tic t+1 while tic t runs; after four tics in a row without the
host's command it skips one (``skiptics``) and is back to building tic t's command in tic t.
Which of the two a joiner is doing decides on which tic its action lands, and it was decided by
which packet happened to arrive first: the same seed and actions gave different games.

Every packet passes through this switch, so the parent knows when the host has sent its command
for a tic. Each tic it steps the host first, waits here until the host's command has been
delivered to every joiner, and only then steps the joiners (``doom_players._Players.round``).
Every joiner then always finds the host's command waiting: it builds its command one tic ahead
from the first tic the parent steps and never skips back (it is never four tics without the
host's command), whatever the machine's load.

Layout: the host engine binds the game's port; joiner g is told to join
``127.0.0.1:ports[g]``, a socket of this switch, so the host sees joiner g at ``ports[g]`` and
tells the other joiners that address. A packet that reaches socket g

- from the host goes to joiner g (``delivered[g]`` counts them);
- from joiner g goes to the host (joiner g's own address is learnt from its first packet);
- from another joiner h goes to joiner g, sent from h's socket (the address g knows h by).

Loopback UDP does not drop packets, and ZDoom resends any it misses, so nothing here retries.
"""

from __future__ import annotations

import socket

HOST = "127.0.0.1"
MAX_PACKET = 65536


class Relay:
    """One socket per joiner between the host engine on ``host_port`` and ``joiners`` joiners."""

    def __init__(self, host_port: int, joiners: int) -> None:
        self.host = (HOST, int(host_port))
        self.sockets: list[socket.socket] = []
        try:
            for _ in range(joiners):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.sockets.append(s)
                s.bind((HOST, 0))
                s.setblocking(False)
        except OSError:
            self.close()
            raise
        self.ports = [s.getsockname()[1] for s in self.sockets]
        self.joiner_address: list[tuple[str, int] | None] = [None] * joiners
        self.delivered = [0] * joiners  # host -> joiner g packets forwarded

    def fileno_map(self) -> dict[int, int]:
        """Socket file descriptor -> joiner index, for ``select``."""
        return {s.fileno(): g for g, s in enumerate(self.sockets)}

    def forward(self, g: int) -> None:
        """Forward every packet waiting on joiner g's socket (non-blocking)."""
        s = self.sockets[g]
        while True:
            try:
                data, source = s.recvfrom(MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. an ICMP error left by a peer that has exited
                continue
            if source == self.host:
                self._send(g, data, self.joiner_address[g])
                self.delivered[g] += 1
                continue
            h = self._joiner_at(source)
            if h is None and self.joiner_address[g] is None:
                self.joiner_address[g] = source  # joiner g's first packet (its connect)
                h = g
            if h == g:
                self._send(g, data, self.host)
            elif h is not None:
                self._send(h, data, self.joiner_address[g])

    def _joiner_at(self, address: tuple[str, int]) -> int | None:
        for h, known in enumerate(self.joiner_address):
            if known == address:
                return h
        return None

    def _send(self, via: int, data: bytes, to: tuple[str, int] | None) -> None:
        if to is None:
            return
        try:
            self.sockets[via].sendto(data, to)
        except OSError:  # the engine has exited; the parent notices the dead process
            pass

    def close(self) -> None:
        for s in self.sockets:
            s.close()
