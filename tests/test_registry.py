import pytest

from densekd.registry import MODELS, Registry, RegistryError


def test_build_and_defaults_filtered_by_signature():
    reg = Registry("thing")

    @reg.register()
    class Thing:
        def __init__(self, a, b=2):
            self.a, self.b = a, b

    t = reg.build(dict(type="Thing", a=1), b=5, not_a_param=3)
    assert (t.a, t.b) == (1, 5)
    assert reg.build(dict(type="Thing", a=1, b=7), b=5).b == 7  # explicit wins over defaults


def test_unknown_type_lists_registered_and_close_match():
    with pytest.raises(RegistryError) as err:
        MODELS.build(dict(type="resnet21"))
    msg = str(err.value)
    assert "Unknown model type 'resnet21'" in msg and "Did you mean" in msg and "resnet20" in msg
    assert "Registered models:" in msg and "wrn_40_2" in msg


def test_bad_kwarg_names_real_parameters():
    with pytest.raises(RegistryError) as err:
        MODELS.build(dict(type="simple_cnn", num_clases=10))
    msg = str(err.value)
    assert "'num_clases'" in msg and "Did you mean 'num_classes'" in msg and "width" in msg


def test_duplicate_registration_rejected():
    reg = Registry("x")
    reg.register("a")(lambda: 1)
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("a")(lambda: 2)


def test_module_without_own_init_takes_no_kwargs():
    import torch

    reg = Registry("loss")

    @reg.register()
    class Plain(torch.nn.Module):
        def forward(self, x):
            return x

    assert isinstance(reg.build(dict(type="Plain"), s_shapes=[1]), Plain)  # offered defaults are dropped
    with pytest.raises(RegistryError, match="has no parameter 'T'"):
        reg.build(dict(type="Plain", T=4))
