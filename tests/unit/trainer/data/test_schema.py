"""The sample schema: valid rows, every refusal with its exact message, task-type inference."""

from __future__ import annotations

import importlib

import pytest

from trainer.data.schema import SampleError, drop_nulls, task_type, validate_sample

from .factories import make_row, png_bytes, png_claiming_size


def _errors(row, **kwargs):
    return [(e.field, e.message) for e in validate_sample(row, **kwargs)]


def test_valid_row_has_no_errors():
    assert validate_sample(make_row()) == []


def test_valid_detection_row_has_no_errors():
    row = make_row(
        ability="cv_detection",
        reward_model={
            "answer": "[{'bbox_2d': [10, 20, 300, 400], 'label': 'dog'}]",
            "ground_truth": "<answer>\n[{'bbox_2d': [10, 20, 300, 400], 'label': 'dog'}]\n</answer>",
            "accuracy_ratio": 1.0,
            "format_ratio": 0.1,
            "verifier": "detection",
            "verifier_parm": {
                "det_verifier_normalized": True,
                "det_reward_ratio": {
                    "iou_max_label_first": 1.0,
                    "iou_max_iou_first": 0.0,
                    "iou_completeness": 0.3,
                    "map": 0.0,
                    "map50": 0.0,
                    "map75": 0.0,
                },
            },
        },
    )
    assert validate_sample(row) == []


def test_orsta_null_verifier_parm_is_accepted():
    # Orsta-Data-47k's math rows carry a verifier_parm whose every entry is null.
    row = make_row()
    row["reward_model"]["verifier_parm"] = {
        "det_verifier_normalized": None,
        "det_reward_ratio": dict.fromkeys(("iou_max_label_first", "map"), None),
    }
    row["extra_info"] = {"id": None, "image_path": None}
    assert validate_sample(row) == []


def test_text_only_row_without_markers_is_valid():
    row = make_row(images=[], prompt=[{"role": "user", "content": "What is 2 + 2?"}])
    assert validate_sample(row) == []


def test_fields_outside_the_schema_are_ignored():
    assert validate_sample(make_row(note="kept by the caller")) == []


LONG = "x" * 10_000
MISMATCH_0 = (
    "prompt",
    "has 0 <image> marker(s) but the sample has 1 image(s); put one <image> where each image goes",
)
MISMATCH_2 = (
    "prompt",
    "has 2 <image> marker(s) but the sample has 1 image(s); put one <image> where each image goes",
)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"data_source": None}, [("data_source", "is required")]),
        ({"data_source": ""}, [("data_source", "must be a non-empty string")]),
        ({"data_source": "   "}, [("data_source", "must be a non-empty string")]),
        ({"data_source": 7}, [("data_source", "must be a string, got int")]),
        ({"data_source": LONG}, [("data_source", "is 10000 characters long; the limit is 200")]),
        (
            {"data_source": "mm\x00math"},
            [("data_source", "must not contain control characters (NUL, newline, ...): 'mm\\x00math'")],
        ),
        (
            {"data_source": "a\nb"},
            [("data_source", "must not contain control characters (NUL, newline, ...): 'a\\nb'")],
        ),
        ({"ability": ["math"]}, [("ability", "must be a string, got list")]),
        ({"ability": "y" * 201}, [("ability", "is 201 characters long; the limit is 200")]),
        (
            {"prompt": "What is 2 + 2?"},
            [("prompt", "must be a list of {role, content} messages, got str")],
        ),
        ({"prompt": []}, [("prompt", "must hold at least one message")]),
        (
            {"prompt": ["<image>hi"]},
            [
                ("prompt[0]", "must be a {role, content} object, got str"),
                ("prompt", "must hold at least one message with role 'user'"),
                MISMATCH_0,
            ],
        ),
        (
            {"prompt": [{"role": "robot", "content": "<image>hi"}]},
            [
                ("prompt[0].role", "must be one of system, user, assistant; got 'robot'"),
                ("prompt", "must hold at least one message with role 'user'"),
            ],
        ),
        (
            {"prompt": [{"role": "user", "content": 5}]},
            [
                ("prompt[0].content", "must be a string, got int"),
                MISMATCH_0,
            ],
        ),
        (
            {"prompt": [{"role": "user", "content": "<image>a\x00b"}]},
            [("prompt[0].content", "must not contain NUL characters")],
        ),
        (
            {"prompt": [{"role": "user", "content": "<image><image>compare"}]},
            [MISMATCH_2],
        ),
        (
            {"prompt": [{"role": "user", "content": "no marker"}]},
            [MISMATCH_0],
        ),
        (
            {"prompt": [{"role": "user", "content": "<image>" + "z" * 100_000}]},
            [("prompt", "holds 100007 characters; the limit is 100000")],
        ),
        ({"images": "a.png"}, [("images", "must be a list of images, got str")]),
        (
            {"images": [5]},
            [("images[0]", "must be a {bytes, path} object or a path string, got int")],
        ),
        ({"images": [{"bytes": None, "path": None}]}, [("images[0]", "has neither bytes nor path")]),
        ({"images": [{"bytes": "abc", "path": "a.png"}]}, [("images[0].bytes", "must be binary, got str")]),
        ({"images": [{"bytes": None, "path": 3}]}, [("images[0].path", "must be a string, got int")]),
        (
            {"images": ["a.png"]},
            [("images[0]", "image path 'a.png' given but no image archive to read it from")],
        ),
        (
            {"images": [{"bytes": b"hello", "path": "a.png"}]},
            [("images[0]", "not a decodable image; use PNG, JPEG, WebP, GIF, BMP or TIFF")],
        ),
        (
            {"images": [{"bytes": png_claiming_size(7000, 7000), "path": "bomb.png"}]},
            [
                (
                    "images[0]",
                    "image is 7000x7000 = 49000000 pixels; the limit is 40000000"
                    " (decompression bombs are refused): downscale it",
                )
            ],
        ),
        (
            {"images": [{"bytes": png_bytes(), "path": "a"}] * 65},
            [("images", "holds 65 images; the limit is 64")],
        ),
        ({"reward_model": "\\boxed{4}"}, [("reward_model", "must be an object, got str")]),
        ({"extra_info": "id-1"}, [("extra_info", "must be an object or null, got str")]),
        ({"extra_info": {"id": 5}}, [("extra_info.id", "must be a string or null, got int")]),
        ({"extra_info": {"id": "a\x00"}}, [("extra_info.id", "must not contain NUL characters")]),
        (
            {"extra_info": {"image_path": LONG}},
            [("extra_info.image_path", "is 10000 characters long; the limit is 1000")],
        ),
    ],
)
def test_invalid_rows(overrides, expected):
    assert _errors(make_row(**overrides)) == expected


def test_missing_fields_are_all_reported():
    assert _errors({}) == [
        ("data_source", "is required"),
        ("images", "is required"),
        ("prompt", "is required"),
        ("ability", "is required"),
        ("reward_model", "is required"),
    ]


@pytest.mark.parametrize("row", [[], "row", None, 3])
def test_a_row_must_be_an_object(row):
    kind = type(row).__name__ if row is not None else "null"
    assert _errors(row) == [("row", f"must be an object with the sample fields, got {kind}")]


def test_hostile_values_are_shortened_in_messages():
    (error,) = validate_sample(make_row(data_source="\x00" * 150), check_images=False)
    # 40 characters are shown, then "...": the message stays short whatever the input.
    assert (
        error.message == "must not contain control characters (NUL, newline, ...): '" + "\\x00" * 40 + "...'"
    )


def test_check_images_false_skips_decoding():
    row = make_row(images=[{"bytes": b"not an image", "path": "a.png"}])
    assert validate_sample(row, check_images=False) == []


def test_max_image_pixels_is_configurable():
    row = make_row(images=[{"bytes": png_bytes(32, 24), "path": "a.png"}])
    # 32 * 24 = 768 pixels
    assert validate_sample(row, max_image_pixels=768) == []
    assert _errors(row, max_image_pixels=767) == [
        (
            "images[0]",
            "image is 32x24 = 768 pixels; the limit is 767 (decompression bombs are refused): downscale it",
        )
    ]


def test_path_images_use_the_resolver():
    store = {"images/a.png": png_bytes()}

    def resolve(path: str) -> bytes:
        if path not in store:
            raise KeyError(path)
        return store[path]

    assert validate_sample(make_row(images=["images/a.png"]), resolve_image=resolve) == []
    assert _errors(make_row(images=["images/b.png"]), resolve_image=resolve) == [
        ("images[0]", "cannot read image 'images/b.png': 'images/b.png'")
    ]
    assert _errors(make_row(images=[{"bytes": None, "path": "images/a.png"}]), resolve_image=resolve) == []


def test_reward_model_errors_are_delegated_with_their_field():
    # The reward package owns the reward_model rules; the schema reports them under reward_model.<field>.
    row = make_row()
    row["reward_model"] = {**row["reward_model"], "verifier": "no-such-verifier"}
    (error,) = validate_sample(row)
    assert error.field == "reward_model.verifier"
    assert "no-such-verifier" in error.message


@pytest.mark.parametrize(
    ("field", "value"),
    [("format_ratio", 1.5), ("accuracy_ratio", -0.1), ("accuracy_ratio", "high")],
)
def test_reward_ratio_out_of_range_is_refused(field, value):
    row = make_row()
    row["reward_model"] = {**row["reward_model"], field: value}
    (error,) = validate_sample(row)
    assert error.field == f"reward_model.{field}"


def test_ground_truth_that_does_not_parse_is_refused():
    row = make_row()
    row["reward_model"] = {**row["reward_model"], "ground_truth": "\\boxed{"}
    (error,) = validate_sample(row)
    assert error.field == "reward_model.ground_truth"


def test_reward_model_verdicts_are_cached(monkeypatch):
    rewards = importlib.import_module("trainer.rewards")
    calls = []
    real = rewards.validate_reward_model

    def counting(reward_model):
        calls.append(reward_model["ground_truth"])
        return real(reward_model)

    monkeypatch.setattr(rewards, "validate_reward_model", counting)
    good = make_row()
    good["reward_model"] = {**good["reward_model"], "ground_truth": "\\boxed{123456789}"}
    bad = make_row()
    bad["reward_model"] = {**bad["reward_model"], "ground_truth": "\\boxed{987654321}", "format_ratio": 7.0}
    for _ in range(3):
        assert validate_sample(good) == []
        (error,) = validate_sample(bad)
        assert error.field == "reward_model.format_ratio"
    assert calls == ["\\boxed{123456789}", "\\boxed{987654321}"]


def test_sample_error_str():
    assert str(SampleError("images[0]", "is broken")) == "images[0]: is broken"


def test_drop_nulls():
    value = {"a": 1, "b": None, "c": {"d": None, "e": {"f": None}}, "g": [None, 1], "h": {"i": 0}}
    # None entries and the dicts they empty go; lists and falsy non-None values stay.
    assert drop_nulls(value) == {"a": 1, "g": [None, 1], "h": {"i": 0}}


@pytest.mark.parametrize(
    ("ability", "data_source", "verifier", "expected"),
    [
        ("math", "mm_math", "mathverify", "math"),
        ("puzzle", "polymath", "mathverify", "puzzle"),
        ("science", "scienceqa", "mathverify", "science"),
        ("chart", "chartqapro", "mathverify", "chart"),
        ("ocr", "textvqa", "mathverify", "ocr"),
        ("counting", "clevr", "mathverify", "counting"),
        ("cv_detection", "v3det_train", "detection", "detection"),
        ("cv_grounding", "refcoco", "detection", "grounding"),
        # ability decides before data_source
        ("chart", "math_charts", "mathverify", "chart"),
        # no keyword: the verifier's default
        ("", "object365_train", "detection", "detection"),
        ("", "my_source", "detection", "detection"),
        ("", "my_source", "mathverify", "math"),
        # keywords from the other verifier's tasks are ignored
        ("counting", "coco_count", "detection", "detection"),
        ("cv_detection", "mixed", "mathverify", "math"),
        # data_source keywords when ability says nothing
        ("vqa", "synth_ocr", "mathverify", "ocr"),
        ("vqa", "RefCOCOg_val", "detection", "grounding"),
        # unknown verifier: all eight are candidates
        ("cv_grounding", "x", "other", "grounding"),
        ("", "", "other", "math"),
    ],
)
def test_task_type(ability, data_source, verifier, expected):
    row = {"ability": ability, "data_source": data_source, "reward_model": {"verifier": verifier}}
    assert task_type(row) == expected


def test_task_type_of_a_row_without_reward_model():
    assert task_type({"ability": "ocr"}) == "ocr"
    assert task_type({}) == "math"
