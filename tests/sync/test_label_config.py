"""batchlabel.sync.label_config: the one reader of tool names, labels and the image's data key."""

from __future__ import annotations

from batchlabel.sync.label_config import generate_label_config, parse_control_names

CUSTOM = """<View>
  <Image name="photo" value="$picture"/>
  <RectangleLabels name="boxes" toName="photo"><Label value="dog"/><Label value="cat"/></RectangleLabels>
</View>"""


def test_generated_config_uses_the_image_key_and_default_names() -> None:
    names, labels = parse_control_names(generate_label_config(("cat", "person")))
    assert (names.image, names.image_key, labels) == ("image", "image", ["cat", "person"])


def test_custom_config_names_its_image_key_and_tools() -> None:
    names, labels = parse_control_names(CUSTOM)
    assert (names.image, names.image_key, names.rectangle, names.brush) == ("photo", "picture", "boxes", None)
    assert labels == ["dog", "cat"]
