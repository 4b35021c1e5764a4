"""steering/offline/evaluate.py: its tables, checked exactly (the sweep itself is measured, not tested)."""

from steering.offline.evaluate import markdown_table


def test_markdown_table_marks_settings_that_meet_the_target():
    run = {"mode": "add", "strength": 40.0, "inclusion": 0.75, "fluency_ratio": 1.9, "text_fluency_ratio": 1.5}
    miss = dict(run, strength=60.0, inclusion=0.95, fluency_ratio=2.1)
    result = {"features": [{"label": "music", "key": "L15:1", "unsteered_inclusion": 0.05,
                            "system_prompt": {"inclusion": 0.1, "fluency_ratio": 1.1}, "runs": [run, miss]}]}
    lines = markdown_table(result).splitlines()
    assert lines[4] == "| music (L15:1) | add | 40 | 75% ✓ | 1.90 | 1.50 |"
    assert lines[5] == "| music (L15:1) | add | 60 | 95% | 2.10 | 1.50 |"
    assert "system prompt | - | 10% | 1.10 | - |" in lines[3]
