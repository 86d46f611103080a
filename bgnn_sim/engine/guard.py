"""The wall guard: a safety net that keeps particles on their side of the walls.

A learned simulator has no hard wall constraint, so a frame can put a particle through a wall or
into it. After each frame, the guard tests every active particle against the walls present at
the new time t1, posed at t1:

- crossed: its straight path x0 -> x1 passed through a triangle. For a moving wall (a turning
  drum) the path is judged in the wall's frame: x0 is carried along with the wall from t0 to t1,
  x0' = pose(t1) @ pose(t0)^-1 @ x0, so that a wall sweeping past a resting particle is not a
  crossing and a particle the wall overtook is. The particle is moved along that triangle's
  normal back to the side of x0', at the gap from the triangle's plane (its motion along the
  wall is kept);
- too close: it ended nearer than the gap to a triangle: it is pushed straight away from the
  closest point to the gap.

A corrected particle also loses the component of its velocity x1 - x0 into the wall, relative to
the wall's own velocity at the contact (a drum wall keeps dragging it along). A corner (a cone
meeting the outlet, a drum's end cap) can need a second correction: the corrected particles are
tested again, at most PASSES times in all. The velocity lives in the state's history as x1 - x0,
so the row before x1 is rewritten as x1 - v for the corrected particles; the untouched particles
keep both rows bit for bit.

A backend that has already searched the frame's wall contacts (the BGNN's graph) hands them
over as a `Clearance`: the particles it found farther than its wall cutoff from every wall at t0
are skipped when no wall can have come within their reach by t1 (the bound in
`_provably_clear`), and a particle near a wall is tested against the triangles found near it at
t0 when they must include every triangle within its reach at t1 (`_KnownPairs`), so that the
guard searches the mesh only for the few particles that moved too far. The result is the same
as testing every particle against every triangle.

The guard is a safety net, not the fix: a model that needs it often is a model to retrain, and
the number of corrections per frame is recorded in the trajectory for that reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from bgnn_sim.engine.state import ParticleState, Scene
from bgnn_sim.geometry.proximity import (
    TriangleContacts,
    closest_point_on_triangle_pairs,
    closest_point_on_triangles,
    row_dot,
)
from bgnn_sim.geometry.wall import Wall, posed_triangles
from bgnn_sim.graph.walls import WallContacts, triangle_normals, wall_velocity

# Default gap, in particle radii. A resting DEM particle sits about one radius from a wall (the
# real LIGGGHTS runs never come closer than ~0.9 radius), so half a radius never touches a
# physical state: the guard acts only on states a real particle cannot reach.
DEFAULT_GAP_RADII = 0.5
# Tests of one frame: the first over all active particles, the others over the particles the
# previous one corrected (a correction at a corner can put a particle into the other wall).
PASSES = 3
# Round-off allowance, as a fraction of the gap: a path meets a triangle when its crossing point
# with the plane lies this close to it (a path through an edge shared by two triangles hits at
# least one), and a particle put back at the gap is not found "too close" again.
_TOLERANCE = 1e-6
# Particles whose reach (gap + displacement) exceeds this many times the median reach are
# searched separately, so that a few fast ones do not widen the proximity search of all.
_FAST_REACH = 2.0


@dataclass(frozen=True)
class WallGuard:
    """Settings of the wall guard.

    Attributes:
        gap: distance (m) from a wall at which a corrected particle is put back, and below which
            a particle is pushed out; None: DEFAULT_GAP_RADII of each particle's radius.
    """

    gap: float | None = None

    def __post_init__(self) -> None:
        if self.gap is not None and not self.gap > 0:
            raise ValueError(f"the wall guard's gap must be positive, not {self.gap}")

    def gaps(self, radius: Tensor) -> Tensor:
        """[n] gap (m) of particles of radius [n] (m)."""
        if self.gap is None:
            return DEFAULT_GAP_RADII * radius
        return torch.full_like(radius, self.gap)

    def describe(self) -> dict:
        """JSON-serialisable settings, for a trajectory's metadata."""
        return {"gap_radii": DEFAULT_GAP_RADII} if self.gap is None else {"gap_m": self.gap}


DEFAULT_WALL_GUARD = WallGuard()


@dataclass(frozen=True)
class Clearance:
    """What the frame's wall-contact search found, at the time t0 of the frame's start.

    Attributes:
        far: [n] bool over the active particles: no wall within `distance` of it at t0.
        distance: the search's cutoff (m).
        time: t0 (s); a clearance of another time is ignored.
        walls: ids of the walls present at t0, in the order of their triangles (a wall that
            appears later was not searched).
        contacts: the (particle, triangle) pairs within `distance` at t0, sorted by (particle,
            triangle); triangles numbered over the present walls' soup, as the guard's.
    """

    far: Tensor
    distance: float
    time: float
    walls: tuple[int, ...]
    contacts: TriangleContacts

    @staticmethod
    def of(found: WallContacts, n: int, distance: float, time: float) -> Clearance:
        """The clearance of n particles whose contacts within `distance` (m) at `time` (s) are
        `found` (particle indices 0..n-1)."""
        far = torch.ones(n, dtype=torch.bool, device=found.triangles.device)
        far[found.contacts.point_index] = False
        walls = tuple(id(wall) for wall in found.walls)
        return Clearance(far, distance, time, walls, found.contacts)

    def usable(self, posed: _PosedWalls, t0: float, n: int) -> bool:
        """Whether it describes this frame: its time, its particles, no wall it did not see."""
        return (self.time == t0 and len(self.far) == n
                and {id(wall) for wall in posed.walls} <= set(self.walls))  # fmt: skip


class GuardedFrame(NamedTuple):
    """A frame after the guard.

    Attributes:
        positions: [n, 3] x1 with the corrected particles moved.
        previous: [n, 3] the row before, so that positions - previous is the (corrected)
            velocity; equal to x0 for the untouched particles.
        corrected: number of particles the guard moved.
    """

    positions: Tensor
    previous: Tensor
    corrected: int


def guarded_advance(
    guard: WallGuard,
    scene: Scene,
    state: ParticleState,
    positions: Tensor,
    clearance: Clearance | None = None,
) -> ParticleState:
    """The state one frame after `state` at `positions` [N, 3], its active particles guarded;
    `guard_corrections` of the result holds how many the guard moved. `clearance`: the
    backend's wall contacts of `state` (see Clearance), to skip the particles far from walls."""
    active = state.active
    frame = guard_frame(
        scene.walls, state.positions[active], positions[active], state.time, scene.frame_dt,
        guard.gaps(state.radius[active]).to(positions), clearance,
    )  # fmt: skip
    if frame.corrected == 0:
        return replace(state.advanced(positions, scene.frame_dt), guard_corrections=0)
    positions = positions.clone()
    positions[active] = frame.positions
    advanced = state.advanced(positions, scene.frame_dt)
    advanced.history[-2, active] = frame.previous  # a fresh tensor: `state` is not touched
    return replace(advanced, guard_corrections=frame.corrected)


def guard_frame(
    walls: list[Wall],
    x0: Tensor,
    x1: Tensor,
    t0: float,
    frame_dt: float,
    gap: Tensor,
    clearance: Clearance | None = None,
) -> GuardedFrame:
    """Keep particles moving from x0 (time t0) to x1 (t0 + frame_dt) on their side of the walls.

    Args:
        walls: the scene's walls; those present at t1 = t0 + frame_dt are tested, posed at t1.
        x0: [n, 3] positions (m) at t0.
        x1: [n, 3] positions (m) at t1.
        t0: time (s) of x0.
        frame_dt: seconds per frame; the velocity x1 - x0 is in m per frame.
        gap: [n] distance (m) to keep from the walls, > 0.
        clearance: the particles known to be far from the walls at t0 (None: test all).

    Returns:
        The corrected frame (see the module docstring); inputs are never modified.
    """
    posed = _PosedWalls.at(walls, t0, t0 + frame_dt, x1)
    if posed is None or len(x1) == 0:
        return GuardedFrame(x1, x0, 0)
    if clearance is not None and not clearance.usable(posed, t0, len(x1)):
        clearance = None
    known = _KnownPairs.of(clearance, posed)
    moved, velocity = x1.clone(), x1 - x0
    corrected = torch.zeros(len(x1), dtype=torch.bool, device=x1.device)
    todo = torch.nonzero(~_provably_clear(posed, clearance, x0, x1, gap)).squeeze(1)
    for _ in range(PASSES):
        if len(todo) == 0:
            break
        todo, position, speed = _guard_pass(posed, known, x0[todo], moved[todo],
                                            velocity[todo], gap[todo], todo, frame_dt)  # fmt: skip
        moved[todo], velocity[todo] = position, speed
        corrected[todo] = True
    count = int(corrected.sum())
    if count == 0:
        return GuardedFrame(x1, x0, 0)
    previous = x0.clone()
    previous[corrected] = moved[corrected] - velocity[corrected]
    return GuardedFrame(moved, previous, count)


def _provably_clear(
    posed: _PosedWalls, clearance: Clearance | None, x0: Tensor, x1: Tensor, gap: Tensor
) -> Tensor:
    """[n] bool: particles that no wall can be within reach of at t1, so that a test would find
    nothing. A particle farther than d from every wall at t0 is at t1 farther than
    d - |x1 - x0| - (the farthest any wall point moved), while the test reaches gap + the
    farthest move of x0 carried along with a wall to x1 (`_guard_pass`)."""
    if clearance is None:
        return torch.zeros(len(x1), dtype=torch.bool, device=x1.device)
    lower = clearance.distance - torch.linalg.vector_norm(x1 - x0, dim=1) - posed.largest_motion()
    return clearance.far.to(x1.device) & (lower > gap + posed.farthest_move(x0, x1))


@dataclass(frozen=True)
class _PosedWalls:
    """The walls present at t1, posed at t1, as one triangle soup.

    Attributes:
        walls: the present walls.
        triangles: [F, 3, 3] corners at t1.
        normals: [F, 3] unit normals (zero for a degenerate triangle).
        wall_index: [F] int64, the wall of each triangle (index into `walls`).
        carry: per wall, None (it did not move) or ([3, 3] rotation, [3] shift) taking a point
            at t0 along with the wall to t1.
        t1: time (s) of the pose.
    """

    walls: list[Wall]
    triangles: Tensor
    normals: Tensor
    wall_index: Tensor
    carry: list[tuple[Tensor, Tensor] | None]
    t1: float

    @staticmethod
    def at(walls: list[Wall], t0: float, t1: float, like: Tensor) -> _PosedWalls | None:
        """The walls present at t1 in the dtype and on the device of `like`; None when there
        is no triangle to test."""
        present, soup, owner = posed_triangles(walls, t1)
        if len(soup) == 0:
            return None
        triangles = torch.from_numpy(soup).to(like)
        wall_index = torch.from_numpy(owner).to(like.device)
        carry = [_carry(wall, t0, t1, like) for wall in present]
        return _PosedWalls(present, triangles, triangle_normals(triangles), wall_index, carry, t1)

    def carried(self, points: Tensor, wall_index: Tensor) -> Tensor:
        """[P, 3] points [P, 3] at t0 carried along with wall `wall_index` [P] to t1."""
        out = points.clone()
        for k, move in enumerate(self.carry):  # a few walls, never a loop over particles
            if move is not None:
                mine = wall_index == k
                out[mine] = points[mine] @ move[0].T + move[1]
        return out

    def farthest_move(self, x0: Tensor, x1: Tensor) -> Tensor:
        """[n] largest distance from x0 carried along with any wall to x1 ([n, 3] each)."""
        moves = [x1 - x0 if move is None else x1 - (x0 @ move[0].T + move[1])
                 for move in self.carry]  # fmt: skip
        return torch.stack([torch.linalg.vector_norm(m, dim=1) for m in moves]).amax(dim=0)

    def largest_motion(self) -> float:
        """The farthest (m) any point of a present wall moved from t0 to t1: the largest
        |w1 - w0| over the triangles' corners (|(R - I) w0 + s| is convex in w0, so its largest
        value over a triangle is at a corner)."""
        largest = 0.0
        for k, move in enumerate(self.carry):
            if move is None:
                continue
            corners = self.triangles[self.wall_index == k].reshape(-1, 3)  # at t1
            before = (corners - move[1]) @ move[0]  # R^T (w1 - s), as rows: at t0
            moved = torch.linalg.vector_norm(corners - before, dim=1)
            largest = max(largest, moved.max().item() if len(moved) else 0.0)
        return largest

    def wall_velocity(self, points: Tensor, wall_index: Tensor) -> Tensor:
        """[P, 3] velocity (m/s) of the wall material at `points` [P, 3] at t1."""
        return wall_velocity(self.walls, wall_index.cpu().numpy(), points, self.t1)


@dataclass(frozen=True)
class _KnownPairs:
    """The (particle, triangle) pairs a backend found within `distance` of each other at t0,
    grouped by particle, to test at t1 instead of searching the mesh. A particle that moved by
    m came at most m + (the farthest any wall point moved) nearer to a triangle from t0 to t1:
    when its reach plus that is within `distance`, its pairs include every triangle it can
    reach, and of those only the pairs that close at t0 need the exact test. Only for the
    walls of t0, numbered alike (the same walls present, in order).

    Attributes:
        start: [n + 1] int64, particle i's pairs are start[i]:start[i + 1].
        triangle: [P] int64, each pair's triangle, ascending within a particle.
        apart: [P] each pair's distance (m) at t0.
        distance: the search's cutoff (m).
        motion: the walls' largest motion (m).
    """

    start: Tensor
    triangle: Tensor
    apart: Tensor
    distance: float
    motion: float

    @staticmethod
    def of(clearance: Clearance | None, posed: _PosedWalls) -> _KnownPairs | None:
        """The pairs of a usable `clearance`; None when its triangles are numbered otherwise."""
        if clearance is None or clearance.walls != tuple(id(wall) for wall in posed.walls):
            return None
        device, contacts = posed.triangles.device, clearance.contacts
        point = contacts.point_index.to(device)
        counts = torch.bincount(point, minlength=len(clearance.far))
        start = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
        return _KnownPairs(start, contacts.triangle_index.to(device),
                           contacts.distance.to(device=device, dtype=posed.triangles.dtype),
                           clearance.distance, posed.largest_motion())  # fmt: skip

    def covering(self, index: Tensor, x0: Tensor, x1: Tensor, reach: Tensor):
        """Which of the particles `index` [m] (at x0 and x1 [m, 3], reaching `reach` [m]) the
        pairs cover ([m] bool), and those particles' pairs that may lie within reach at t1:
        (position in `index` [Q], triangle [Q]), sorted by (position, triangle)."""
        closer = torch.linalg.vector_norm(x1 - x0, dim=1) + self.motion  # [m] most approach
        covered = reach + closer <= self.distance
        members = torch.nonzero(covered).squeeze(1)
        first = self.start[index[members]]
        counts = self.start[index[members] + 1] - first
        owner = torch.repeat_interleave(members, counts)
        before = torch.cumsum(counts, 0) - counts  # each member's first row among the pairs
        row = torch.arange(len(owner), device=owner.device)
        pair = torch.repeat_interleave(first - before, counts) + row
        # Most pairs lie a few radii apart, far beyond a frame's approach: no exact test for
        # them (the margin keeps round-off from dropping a pair at the edge of reach).
        near = self.apart[pair] <= (1 + _TOLERANCE) * reach[owner] + closer[owner]
        return covered, owner[near], self.triangle[pair[near]]


def _carry(wall: Wall, t0: float, t1: float, like: Tensor) -> tuple[Tensor, Tensor] | None:
    """Rotation [3, 3] and shift [3] of pose(t1) @ pose(t0)^-1; None for a wall at rest."""
    relative = wall.motion.transform(t1) @ np.linalg.inv(wall.motion.transform(t0))
    if np.array_equal(relative, np.eye(4)):
        return None  # no arithmetic on x0 for a wall at rest
    relative = torch.from_numpy(relative).to(like)
    return relative[:3, :3], relative[:3, 3]


def _guard_pass(
    posed: _PosedWalls, known: _KnownPairs | None, x0: Tensor, x1: Tensor, velocity: Tensor,
    gap: Tensor, index: Tensor, frame_dt: float,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """One test of particles `index` [m] (x0, x1, velocity [m, 3], gap [m]), against the
    `known` pairs of those they cover and by a search for the others.

    Returns:
        index: [c] the particles corrected; position: [c, 3] their new x1; velocity: [c, 3]
        their new velocity (m per frame).
    """
    reach = gap + posed.farthest_move(x0, x1)  # a path through a wall ends this close to it
    covered = torch.zeros(len(x1), dtype=torch.bool, device=x1.device)
    parts = []
    if known is not None:
        covered, owner, triangle = known.covering(index, x0, x1, reach)
        parts.append(_pairs_within(x1, posed.triangles, reach, owner, triangle))
    parts.append(_contacts_within(x1, posed.triangles, reach, torch.nonzero(~covered).squeeze(1)))
    point, triangle, closest, distance = (torch.cat(column) for column in zip(*parts, strict=True))
    normal, corner = posed.normals[triangle], posed.triangles[triangle, 0]
    start = posed.carried(x0[point], posed.wall_index[triangle])
    s0 = row_dot(start - corner, normal)  # signed distances from the triangle's plane
    s1 = row_dot(x1[point] - corner, normal)
    hit, along = _hits(start, x1[point], s0, s1, posed.triangles[triangle], gap[point])
    crossing = _first_pair(point, along, hit, len(x1))  # the first wall the path met
    crossed = torch.zeros(len(x1), dtype=torch.bool, device=x1.device)
    crossed[point[hit]] = True
    near = (distance < (1 - _TOLERANCE) * gap[point]) & ~crossed[point]
    pushing = _first_pair(point, distance, near, len(x1))  # the nearest triangle
    side = torch.where(s0 >= 0, 1.0, -1.0).to(s0)
    # Crossed: back along the triangle's normal to the gap on x0's side of its plane.
    k = crossing
    out_cross = side[k, None] * normal[k]
    at_cross = x1[point[k]] + (side[k] * gap[point[k]] - s1[k])[:, None] * normal[k]
    # Too close: straight away from the closest point (along the normal when exactly on it).
    k = pushing
    away = x1[point[k]] - closest[k]
    length = torch.linalg.vector_norm(away, dim=1, keepdim=True)
    out_push = torch.where(length > 0, away / length.clamp_min(torch.finfo(away.dtype).tiny),
                           side[k, None] * normal[k])  # fmt: skip
    at_push = closest[k] + gap[point[k], None] * out_push
    pairs = torch.cat([crossing, pushing])
    outward = torch.cat([out_cross, out_push])
    particles = point[pairs]
    # The wall moves at the contact of the corrected particle: the foot of its normal.
    contact = torch.cat([at_cross, at_push]) - gap[particles, None] * outward
    wall = posed.wall_velocity(contact, posed.wall_index[triangle[pairs]]) * frame_dt
    speed = _without_approach(velocity[particles], wall, outward)
    return index[particles], torch.cat([at_cross, at_push]), speed


def _pairs_within(
    points: Tensor, triangles: Tensor, reach: Tensor, point: Tensor, triangle: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The pairs (point [P], triangle [P]) with distance <= reach[point], as `_contacts_within`
    returns them."""
    query = points.index_select(0, point)
    closest = closest_point_on_triangle_pairs(query, triangles.index_select(0, triangle))
    distance = torch.linalg.vector_norm(query - closest, dim=1)
    keep = (distance <= reach.index_select(0, point)).nonzero().squeeze(1)
    return tuple(x.index_select(0, keep) for x in (point, triangle, closest, distance))


def _contacts_within(
    points: Tensor, triangles: Tensor, reach: Tensor, searched: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(point, triangle) pairs of the points `searched` [s] with distance <= reach[point]:
    point [P], triangle [P] indices, closest [P, 3] points on the triangles, distance [P]. One
    search reaches _FAST_REACH x the median reach; the fast particles beyond it are searched
    apart, so that a few of them do not widen the search of all."""
    if len(searched) == 0:  # nothing to search: no pairs, in the right dtypes
        return _pairs_within(points, triangles, reach, searched, searched)
    common = _FAST_REACH * reach[searched].median().item()
    fast = reach[searched] > common
    parts = []
    for members in (searched[~fast], searched[fast]):
        if len(members) == 0:
            continue
        mine = reach[members]
        cutoff = max(common, mine.max().item())
        found = closest_point_on_triangles(points[members], triangles, cutoff)
        keep = found.distance <= mine[found.point_index]
        parts.append((members[found.point_index[keep]], found.triangle_index[keep],
                      found.closest[keep], found.distance[keep]))  # fmt: skip
    return tuple(torch.cat(column) for column in zip(*parts, strict=True))


def _hits(
    start: Tensor, end: Tensor, s0: Tensor, s1: Tensor, triangles: Tensor, gap: Tensor
) -> tuple[Tensor, Tensor]:
    """Whether the segments start -> end [P, 3] pass through their triangles [P, 3, 3] ([P]
    bool), and where along the segment they meet the plane ([P], 0 at start, 1 at end).

    s0, s1: [P] signed distances of start and end from the triangle's plane. A start in the
    plane has no side to come from, and a segment in the plane does not pass through it."""
    through = (s0 != 0) & (s0 * s1 <= 0)
    along = torch.where(through, s0 / torch.where(through, s0 - s1, 1.0), 2.0)
    meet = start + along.clamp(0, 1)[:, None] * (end - start)
    miss = torch.linalg.vector_norm(closest_point_on_triangle_pairs(meet, triangles) - meet, dim=1)
    return through & (miss <= _TOLERANCE * gap), along


def _first_pair(owner: Tensor, key: Tensor, mask: Tensor, n: int) -> Tensor:
    """Indices of the pairs chosen, one per owner that has a pair in `mask`: the one with the
    smallest `key` (the first in order among equals); owner, key, mask: [P]."""
    pair = torch.arange(len(owner), device=owner.device)
    owner, key, pair = owner[mask], key[mask], pair[mask]
    best = torch.full((n,), torch.inf, dtype=key.dtype, device=key.device)
    best = best.scatter_reduce(0, owner, key, "amin")
    winner = key == best[owner]
    first = torch.full((n,), len(mask), device=owner.device)
    first = first.scatter_reduce(0, owner[winner], pair[winner], "amin")
    return first[first < len(mask)]


def _without_approach(velocity: Tensor, wall: Tensor, outward: Tensor) -> Tensor:
    """[c, 3] velocity [c, 3] without its component into the wall (along -outward [c, 3],
    unit) relative to the wall's velocity `wall` [c, 3], same units; the rest is kept."""
    approach = row_dot(velocity - wall, outward).clamp_max(0.0)
    return velocity - approach[:, None] * outward
