import pytest

from atrous.utils.registry import Registry, close_names, did_you_mean


def _registry(**hint) -> Registry:
    registry = Registry("thing", **hint)
    for name in ("alpha", "beta", "gamma"):
        registry.add(name, name.upper(), size=len(name))
    return registry


def test_entries_keep_their_order_facts_and_names():
    registry = _registry()
    assert list(registry) == ["alpha", "beta", "gamma"] and len(registry) == 3
    assert registry.get("beta") == registry["beta"] == "BETA"
    assert registry.info("gamma") == {"size": 5}
    assert registry.names("*a") == ["alpha", "beta", "gamma"]
    assert registry.names(size=4) == ["beta"]
    assert "alpha" in registry and "delta" not in registry and ["alpha"] not in registry


def test_register_decorates_and_refuses_a_second_entry_of_one_name():
    registry = Registry("builder")

    @registry.register()
    def build():
        return 1

    assert registry.get("build") is build
    with pytest.raises(ValueError, match="builder 'build' is registered twice"):
        registry.add("build", build)


def test_unknown_name_lists_close_ones_and_where_to_look():
    with pytest.raises(ValueError, match=r"^unknown thing 'alpah'\. Did you mean: alpha\? Available: alpha, beta"):
        _registry().get("alpah")
    with pytest.raises(ValueError, match=r"^unknown thing 'zzz'\. Available: "):
        _registry().get("zzz")
    listed = Registry("thing", listing="things()")
    listed.add("alpha", 1)
    assert listed.unknown_message("alph") == "unknown thing 'alph'. Did you mean: alpha? things() lists all 1."


def test_a_lead_with_its_own_punctuation_continues_the_sentence():
    registry = _registry(lead="; did you mean ", quote=True)
    assert registry.unknown_message("gama").startswith("unknown thing 'gama'; did you mean 'gamma'? Available:")
    assert registry.unknown_message("zzz").startswith("unknown thing 'zzz'. Available:")


def test_hints_ignore_case_and_fold_case_looks_up_any_case():
    assert "Did you mean: beta?" in _registry().unknown_message("BETTA")
    with pytest.raises(ValueError):
        _registry().get("Beta")  # exact unless the registry folds case
    folding = Registry("dataset", fold_case=True)
    folding.add("camvid", 1)
    assert folding.get("CamVid") == folding["camvid"] == 1 and "CAMVID" in folding
    assert folding.info("CamVid") == {}
    with pytest.raises(ValueError, match="lower case"):
        folding.add("VOC", 2)


def test_did_you_mean_and_close_names():
    assert close_names("lr", ["lr0", "momentum"], n=1, cutoff=0.6) == ["lr0"]
    assert close_names("OHME", ["ohem", "ce"]) == []
    assert close_names("OHME", ["ohem", "ce"], ignore_case=True) == ["ohem"]
    assert did_you_mean("dise", ["dice", "ce"], quote=True, lead=" Did you mean ") == " Did you mean 'dice'?"
    assert did_you_mean("xyz", ["dice"]) == ""
