"""The arena layout of a C library: storages alive at the same time never share bytes."""

from hypothesis import given
from hypothesis import strategies as st

from bnncc.standalone.plan import ALIGN, pack_storages

storages = st.lists(st.tuples(st.integers(1, 5000), st.integers(0, 40), st.integers(0, 10)), min_size=1,
                    max_size=30)


@given(storages)
def test_storages_alive_together_are_disjoint_and_the_arena_holds_them(specs):
    sizes = [-(-s // ALIGN) * ALIGN for s, _, _ in specs]
    lifetimes = [(a, a + d) for _, a, d in specs]
    offsets, arena = pack_storages(sizes, lifetimes)
    for i in range(len(sizes)):
        assert offsets[i] % ALIGN == 0 and offsets[i] + sizes[i] <= arena
        for j in range(i):
            together = lifetimes[i][0] <= lifetimes[j][1] and lifetimes[j][0] <= lifetimes[i][1]
            apart = offsets[i] + sizes[i] <= offsets[j] or offsets[j] + sizes[j] <= offsets[i]
            assert apart or not together, (i, j)
    peak = max(sum(sizes[i] for i in range(len(sizes)) if lifetimes[i][0] <= t <= lifetimes[i][1])
               for t in range(60))
    assert peak <= arena <= sum(sizes)
