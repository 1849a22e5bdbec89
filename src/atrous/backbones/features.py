"""What a backbone publishes about its feature maps (timm's ``feature_info`` idea)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeatureSpec:
    """One feature map a backbone returns: channels, stride w.r.t. the input, module."""

    num_chs: int
    reduction: int
    module: str


class FeatureInfo(list):
    """The ordered list of :class:`FeatureSpec` a backbone's ``forward`` returns.

    Decoders ask for features by what they are (``index(reduction=4)``,
    ``index(module="layer3")``), never by position, so a different backbone or output
    stride cannot silently hand them the wrong map.
    """

    def index(self, *, reduction: int | None = None, module: str | None = None) -> int:  # type: ignore[override]
        """Position of the first feature with this reduction and/or module name."""
        if reduction is None and module is None:
            raise ValueError("FeatureInfo.index needs reduction= or module=")
        for i, spec in enumerate(self):
            if (reduction is None or spec.reduction == reduction) and (module is None or spec.module == module):
                return i
        raise ValueError(f"no feature with reduction={reduction} module={module!r}; the backbone has {list(self)}")

    def channels(self) -> list[int]:
        return [spec.num_chs for spec in self]

    def reductions(self) -> list[int]:
        return [spec.reduction for spec in self]
