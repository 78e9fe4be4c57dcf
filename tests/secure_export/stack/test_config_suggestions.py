"""A misspelt stack key gets "did you mean" from the keys allowed at that place."""

from tests.secure_export.stack.test_config import _mutate, _problems, _write


def test_a_misspelt_nested_key_names_the_key_it_probably_meant(tmp_path):
    problems = _problems(_write(tmp_path, "typo", _mutate(lambda c: c["secure-export:receiver"].update(minReplica=1))))
    assert any(
        p.endswith("secure-export:receiver.minReplica: unknown key (did you mean 'minReplicas'?)") for p in problems
    ), problems


def test_a_misspelt_key_inside_a_list_item_and_at_the_top(tmp_path):
    def change(c):
        c["secure-export:alertRules"]["metric"][0]["severty"] = 2
        c["secure-export:actionGroupp"] = {}

    problems = _problems(_write(tmp_path, "typos", _mutate(change)))
    assert any("alertRules.metric[0].severty: unknown key (did you mean 'severity'?)" in p for p in problems), problems
    assert any("secure-export:actionGroupp: unknown key (did you mean 'actionGroup'?)" in p for p in problems), problems


def test_a_key_like_nothing_lists_the_allowed_keys(tmp_path):
    problems = _problems(_write(tmp_path, "far", _mutate(lambda c: c["secure-export:receiver"].update(zzz=1))))
    assert any("receiver.zzz: unknown key; allowed keys: " in p and "minReplicas" in p for p in problems), problems
