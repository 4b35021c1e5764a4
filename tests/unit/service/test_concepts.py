"""Concept vectors as steering items, model-free: a recipe checked by name, the plan's concept edits, the bounded
cache of vectors, and share links that carry the recipe (every bad part named)."""

from urllib.parse import parse_qsl

import pytest
import torch

from steering.inspection.concept_vector import ConceptVector
from steering.service.concepts import ConceptChoice, ConceptVectors, concept_choice, concept_choices, with_concepts
from steering.service.limits import UserError
from steering.service.links import from_query, to_query
from steering.service.setup import SteeringSetup
from steering.steer.plan import Edit, SteeringPlan

DEFAULTS = SteeringSetup(strengths={"L15:3": 0.0})


def _vector(layer=15, phrase="dogs", source="written", seed=0):
    u = torch.nn.functional.normalize(torch.randn(8, generator=torch.Generator().manual_seed(seed)), dim=0)
    return ConceptVector(phrase, layer, u, 3.0, source, 0, (10, 12))


def test_a_concept_edit_follows_the_layers_feature_edits_and_an_add_at_zero_is_left_out():
    feature = Edit("clamp", torch.ones(8) / 8 ** 0.5, 5.0)
    plan = SteeringPlan({15: [feature]}, steer_special_tokens=False, generated_only=True)
    cv, other = _vector(), _vector(12, "cats", seed=1)
    got = with_concepts(plan, [(ConceptChoice(15, "dogs", strength=40.0, mode="cap"), cv),
                               (ConceptChoice(12, "cats", strength=0.0), other)])
    assert list(got.edits[15][0:1]) == [feature] and got.layers == [15]
    edit = got.edits[15][1]
    assert (edit.mode, edit.strength, edit.norm, edit.label) == ("cap", 40.0, 1.0, "concept: dogs")
    assert torch.equal(edit.direction, cv.direction)
    assert (got.steer_special_tokens, got.generated_only) == (False, True)
    assert with_concepts(plan, []) is plan


@pytest.mark.parametrize("value, says", [
    ({"phrase": "d@gs", "layer": 15}, "concept.phrase: concept 'd@gs': write 1-60 letters"),
    ({"phrase": "dogs", "layer": 30}, "concept.layer must be a whole number from 0 to 29, got 30."),
    ({"phrase": "dogs", "layer": 15, "mode": "pin"}, "concept.mode must be one of add, clamp, norm_add, angular, "
                                                     "angular_adaptive, cap (pin needs an SAE feature), got 'pin'."),
    ({"phrase": "dogs", "layer": 15, "source": "dreamt"}, "concept.source must be one of generated, written, got 'dreamt'."),
    ({"phrase": "dogs", "layer": 15, "strength": float("nan")}, "concept.strength must be a finite number"),
    ({"phrase": "dogs", "layer": 15, "mode": "angular", "strength": 200}, "that mode angular accepts, got 200."),
    ({"phrase": "dogs", "layer": 15, "colour": "red"}, "concept.colour: not a concept field (it would be ignored)."),
    ("dogs", "concept must be an object like"),
])
def test_a_bad_concept_is_refused_by_name(value, says):
    with pytest.raises(UserError) as info:
        concept_choice(value, "concept", 30)
    assert says in str(info.value)


def test_api_concepts_default_to_the_inspector_layer_and_are_few():
    assert concept_choices([{"phrase": " the  ocean ", "strength": 40}], 15, 30) == (ConceptChoice(15, "the ocean", strength=40.0),)
    assert concept_choices(None, 15, 30) == ()
    with pytest.raises(UserError, match="concepts must be a list of at most 4 objects"):
        concept_choices([{"phrase": "dogs"}] * 5, 15, 30)


def test_vectors_are_built_once_per_recipe_and_the_oldest_goes_first():
    built = []

    def build(layer, phrase, source):
        built.append((layer, phrase, source))
        return _vector(layer, phrase, source)

    vectors = ConceptVectors(build, kept=2)
    a = vectors.get(15, "dogs", "written")
    assert vectors.get(15, "dogs", "written") is a and built == [(15, "dogs", "written")]
    vectors.get(15, "cats", "written")
    vectors.get(15, "dogs", "written")  # now the newest
    vectors.get(15, "owls", "generated")  # drops cats
    vectors.get(15, "cats", "written")
    assert built == [(15, "dogs", "written"), (15, "cats", "written"), (15, "owls", "generated"), (15, "cats", "written")]


def test_a_link_carries_each_concepts_recipe_strength_mode_source_and_on_box():
    setup = SteeringSetup(strengths={"L15:3": 0.0}, concepts=(
        ConceptChoice(15, "the ocean", "written", 40.0, "add"), ConceptChoice(12, "dogs", "generated", 30.0, "angular", False)))
    query = to_query(setup, DEFAULTS)
    assert query == "cv=L15:the+ocean=40,L12:dogs=30;angular;generated;off"
    assert from_query(dict(parse_qsl(query)), DEFAULTS, 30, 256) == (setup, [])


@pytest.mark.parametrize("cv, why", [
    ("L15:dogs=40;spin", "'spin' is neither a mode (add, clamp, norm_add, angular, angular_adaptive, cap) nor a source"),
    ("L99:dogs=1", "layer 99 does not exist: this model has layers 0 to 29"),
    ("L15:d@g=1", "concept 'd@g': write 1-60 letters"),
    ("L15:dogs=400;angular", "mode angular takes an angle from 0 to 180 degrees, got '400'"),
    ("L15:dogs=x", "the strength of 'dogs' must be a finite number or off, got 'x'"),
    ("dogs=40", "write L, the layer, a colon, the phrase, = and a strength, e.g. cv=L15:dogs=40"),
])
def test_a_bad_concept_in_a_link_is_named_and_the_rest_applies(cv, why):
    setup, warnings = from_query({"cv": f"{cv},L15:cats=20", "temp": "0.5"}, DEFAULTS, 30, 256)
    assert setup.concepts == (ConceptChoice(15, "cats", strength=20.0),) and setup.generation.temperature == 0.5
    assert len(warnings) == 1 and f"The share link's 'cv={cv}' was ignored: {why}" in warnings[0]


def test_a_link_with_too_many_concepts_keeps_the_first_four():
    setup, warnings = from_query({"cv": ",".join(f"L15:c{i}=1" for i in range(6))}, DEFAULTS, 30, 256)
    assert [c.phrase for c in setup.concepts] == ["c0", "c1", "c2", "c3"]
    assert warnings == [f"The share link's 'cv=L15:c{i}' was ignored: a link steers with at most 4 concept vectors."
                        for i in (4, 5)]
