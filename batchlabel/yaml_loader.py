"""YAML for config files: PyYAML's safe loader, refusing duplicate keys and alias bombs.

- A mapping with the same key twice is an error naming the key and its line (PyYAML silently keeps the last one).
- Aliases are expanded by whatever walks the loaded tree, so a few lines of nested aliases (the "billion laughs")
  stand for billions of nodes. Before anything is constructed, the node graph is measured with its aliases
  expanded; more than :data:`MAX_EXPANDED_NODES`, or an alias inside its own anchor, is refused.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

#: Nodes a config may stand for with its aliases expanded (a full config has a few hundred).
MAX_EXPANDED_NODES = 100_000


class YamlExpansionError(ValueError):
    """The document's aliases expand past the bound, or refer to themselves. ``str()`` says which."""


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing duplicate mapping keys."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = key_node.value
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark,
                    )
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def expanded_size(root: Node, *, limit: int = MAX_EXPANDED_NODES) -> int:
    """How many nodes ``root`` stands for with every alias expanded. Raises :class:`YamlExpansionError` past
    ``limit`` or on a recursive alias. Shared nodes are measured once (memoised), so this is linear in the file."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            raise YamlExpansionError(f"an alias refers to its own anchor (line {node.start_mark.line + 1})")
        in_progress.add(key)
        total = 1
        if isinstance(node, SequenceNode):
            children: list[Node] = list(node.value)
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                raise YamlExpansionError(
                    f"aliases expand to more than {limit:,} nodes (a YAML alias bomb?); write the values out"
                )
        in_progress.discard(key)
        sizes[key] = total
        return total

    return size(root)


def load_yaml(text: str) -> Any:
    """Parse one YAML document like ``yaml.safe_load``, refusing duplicate keys and alias bombs.

    Raises ``yaml.YAMLError`` (syntax, duplicate keys; with ``problem_mark``) or :class:`YamlExpansionError`.
    """
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()
