"""The Label Studio labeling config batchlabel generates from a label list, and the names it uses.

The generated config mirrors the seed project: one image, and for the same labels a smart KeyPointLabels tool
(Point2Label), a smart RectangleLabels tool (Bbox2Label), PolygonLabels and BrushLabels. Predictions and interactive
answers refer to these control names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

IMAGE_NAME = "image"
KEYPOINT_NAME = "keypoint"
RECTANGLE_NAME = "rect"
POLYGON_NAME = "polygon"
BRUSH_NAME = "brush"

#: Distinct, readable colours cycled over the labels.
_COLOURS = ("#FF8800", "#1F77B4", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#17BECF")


@dataclass(frozen=True)
class ControlNames:
    """``from_name`` of each tool, the image's ``to_name`` and the task data key of its URL in a labeling config."""

    image: str = IMAGE_NAME
    image_key: str = "image"  #: ``<Image value="$image_key">``: where the task's ``data`` holds the image URL
    keypoint: str | None = KEYPOINT_NAME
    rectangle: str | None = RECTANGLE_NAME
    polygon: str | None = POLYGON_NAME
    brush: str | None = BRUSH_NAME


def _label_tags(labels: tuple[str, ...] | list[str], *, smart_only: bool = False) -> str:
    lines = []
    for index, label in enumerate(labels):
        colour = _COLOURS[index % len(_COLOURS)]
        extra = ' smart="true"' if smart_only else ""
        lines.append(f"    <Label value={quoteattr(label)} background={quoteattr(colour)}{extra}/>")
    return "\n".join(lines)


def generate_label_config(labels: tuple[str, ...] | list[str]) -> str:
    """Label Studio XML for ``labels``: smart keypoints and rectangles, polygons and brush masks on one image."""
    if not labels:
        raise ValueError("at least one label is needed to generate a labeling config")
    tags = _label_tags(labels)
    return f"""<View>
  <Image name="{IMAGE_NAME}" value="$image" zoom="true" zoomControl="true"/>
  <KeyPointLabels name="{KEYPOINT_NAME}" toName="{IMAGE_NAME}" smart="true">
{tags}
  </KeyPointLabels>
  <RectangleLabels name="{RECTANGLE_NAME}" toName="{IMAGE_NAME}" smart="true">
{tags}
  </RectangleLabels>
  <PolygonLabels name="{POLYGON_NAME}" toName="{IMAGE_NAME}" strokeWidth="2" pointSize="small">
{tags}
  </PolygonLabels>
  <BrushLabels name="{BRUSH_NAME}" toName="{IMAGE_NAME}">
{tags}
  </BrushLabels>
</View>
"""


def load_label_config(labels: tuple[str, ...], label_config: Path | None) -> str:
    """The XML to use: the file named by ``label_config`` when set, else one generated from ``labels``."""
    if label_config is not None:
        return Path(label_config).read_text(encoding="utf-8")
    return generate_label_config(labels)


def parse_control_names(xml: str) -> tuple[ControlNames, list[str]]:
    """Find the tools batchlabel uses in any labeling config, and the ordered label list.

    Returns the control names (``None`` for a tool the config lacks; the image is the last ``<Image>``, its data key
    ``image`` unless its ``value`` is a ``$variable``) and the labels in the order they first appear (that order
    gives COCO category ids 1..N). The one reader of these details of the labeling config.
    """
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    names: dict[str, str | None] = {"keypoint": None, "rectangle": None, "polygon": None, "brush": None}
    tag_to_kind = {
        "KeyPointLabels": "keypoint",
        "RectangleLabels": "rectangle",
        "PolygonLabels": "polygon",
        "BrushLabels": "brush",
    }
    image_name = IMAGE_NAME
    image_key = "image"
    labels: list[str] = []
    for element in root.iter():
        if element.tag == "Image":
            image_name = element.get("name", IMAGE_NAME)
            key_value = element.get("value") or ""
            image_key = key_value[1:] if key_value.startswith("$") and len(key_value) > 1 else "image"
        kind = tag_to_kind.get(element.tag)
        if kind is None:
            continue
        if names[kind] is None:
            names[kind] = element.get("name")
        for child in element:
            value = child.get("value")
            if child.tag == "Label" and value and value not in labels:
                labels.append(value)
    return ControlNames(image=image_name, image_key=image_key, **names), labels
