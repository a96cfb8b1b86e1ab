"""The invented world: deterministic, disjoint name and title vocabularies, clear errors."""
import pytest

from course_utils import world


def test_world_is_seeded_split_and_disjoint():
    a, b = world.make_world(30, seed=4), world.make_world(30, seed=4)
    assert a == b and a != world.make_world(30, seed=5)
    assert [f.subset for f in a] == ["n2d"] * 10 + ["d2n"] * 10 + ["both"] * 10
    assert len({f.name for f in a}) == 30 and len({f.title for f in a}) == 30
    world.check_disjoint(a)
    reserved = {"Hilvor", "is"}
    assert not reserved & {w for f in world.make_world(30, seed=4, reserved=reserved) for w in f.name}
    with pytest.raises(ValueError, match="multiple of 3"):
        world.make_world(31)


def test_people_have_attributes_and_never_share_words_with_cities():
    people = world.make_people(40, seed=2, n_cities=6)
    assert people == world.make_people(40, seed=2, n_cities=6)
    assert len({p.name for p in people}) == 40 and len({p.city for p in people}) <= 6
    assert not {w for p in people for w in p.name} & {p.city for p in people}
    assert all(1700 <= p.birth_year <= 1999 and p.job in world.JOBS for p in people)
    assert people[0].attributes()["birth_year"] == str(people[0].birth_year)
    assert people[0].full_name == " ".join(people[0].name)
    with pytest.raises(ValueError, match="n must be an integer between 1 and 5000"):
        world.make_names(0)
    with pytest.raises(ValueError, match="n_cities"):
        world.make_people(5, n_cities=1)
