//! Beam's bounded-trie metric (`beam:metric:user:bounded_trie:v1`): a set
//! of string sequences (lineage paths, for one) kept under a size bound by
//! truncating the largest subtrees. Merging follows Beam's
//! `BoundedTrieData.combine` (apache_beam/metrics/cells.py), so a job's
//! result holds what Beam's own runners report: the union of every
//! bundle's sequences, trimmed to the smaller bound.

use std::collections::BTreeMap;

use oxbeam_model::pipeline as pb;

/// Beam's default bound (sequences kept before truncating).
pub const DEFAULT_BOUND: i32 = 100;

/// A node: a leaf ends a sequence; a truncated node stands for every
/// sequence below it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    /// Sequences this node stands for (1 for a leaf or a truncated node).
    size: usize,
    truncated: bool,
    children: BTreeMap<String, Node>,
}

impl Default for Node {
    fn default() -> Self {
        Node {
            size: 1,
            truncated: false,
            children: BTreeMap::new(),
        }
    }
}

impl Node {
    fn from_proto(p: &pb::BoundedTrieNode) -> Node {
        if p.truncated {
            return Node {
                truncated: true,
                ..Node::default()
            };
        }
        let children: BTreeMap<String, Node> = p
            .children
            .iter()
            .map(|(k, c)| (k.clone(), Node::from_proto(c)))
            .collect();
        Node {
            size: children.values().map(|c| c.size).sum::<usize>().max(1),
            truncated: false,
            children,
        }
    }

    fn to_proto(&self) -> pb::BoundedTrieNode {
        pb::BoundedTrieNode {
            truncated: self.truncated,
            children: self
                .children
                .iter()
                .map(|(k, c)| (k.clone(), c.to_proto()))
                .collect(),
        }
    }

    /// Adds a sequence; returns how much the size grew.
    fn add(&mut self, segments: &[String]) -> usize {
        let Some((head, tail)) = segments.split_first() else {
            return 0;
        };
        if self.truncated {
            return 0;
        }
        let was_empty = self.children.is_empty();
        let mut delta = 0;
        let child = self.children.entry(head.clone()).or_insert_with(|| {
            if !was_empty {
                delta = 1;
            }
            Node::default()
        });
        delta += child.add(tail);
        self.size += delta;
        delta
    }

    /// Folds `other` in; returns the size change (negative when a
    /// truncated node replaces a subtree).
    fn merge(&mut self, other: &Node) -> isize {
        let delta = if self.truncated {
            0
        } else if other.truncated {
            let d = 1 - self.size as isize;
            self.truncated = true;
            self.children.clear();
            d
        } else if other.children.is_empty() {
            0
        } else if self.children.is_empty() {
            self.children = other.children.clone();
            other.size as isize - self.size as isize
        } else {
            let mut d = 0;
            for (prefix, theirs) in &other.children {
                match self.children.get_mut(prefix) {
                    Some(mine) => d += mine.merge(theirs),
                    None => {
                        self.children.insert(prefix.clone(), theirs.clone());
                        d += theirs.size as isize;
                    }
                }
            }
            d
        };
        self.size = (self.size as isize + delta).max(1) as usize;
        delta
    }

    /// Truncates the largest subtree one level: the largest child of the
    /// largest child ... until a node whose children are all leaves, which
    /// becomes truncated. Returns the size change.
    fn trim(&mut self) -> isize {
        if self.children.is_empty() {
            return 0;
        }
        // The first of the largest, in key order (Beam takes the first in
        // insertion order; a proto map keeps no order).
        let mut largest: Option<&String> = None;
        let mut max = 0;
        for (k, c) in &self.children {
            if c.size > max {
                max = c.size;
                largest = Some(k);
            }
        }
        let delta = if max == 1 {
            let d = 1 - self.size as isize;
            self.truncated = true;
            self.children.clear();
            d
        } else {
            let key = largest.cloned().unwrap_or_default();
            self.children.get_mut(&key).map_or(0, Node::trim)
        };
        self.size = (self.size as isize + delta).max(1) as usize;
        delta
    }

    fn contains(&self, segments: &[String]) -> bool {
        match segments.split_first() {
            _ if self.truncated => true,
            None => true,
            Some((head, tail)) => self.children.get(head).is_some_and(|c| c.contains(tail)),
        }
    }
}

/// The value of one bounded-trie metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundedTrie {
    bound: i32,
    root: Node,
}

impl Default for BoundedTrie {
    fn default() -> Self {
        BoundedTrie {
            bound: DEFAULT_BOUND,
            root: Node::default(),
        }
    }
}

impl BoundedTrie {
    /// An empty trie with `bound`.
    pub fn new(bound: i32) -> Self {
        BoundedTrie {
            bound,
            ..BoundedTrie::default()
        }
    }

    /// From a monitoring info's payload (an encoded `BoundedTrie` proto);
    /// `None` if it does not decode.
    pub fn decode(payload: &[u8]) -> Option<BoundedTrie> {
        use prost::Message;
        let p = pb::BoundedTrie::decode(payload).ok()?;
        let mut trie = BoundedTrie::new(if p.bound > 0 { p.bound } else { DEFAULT_BOUND });
        match &p.root {
            Some(root) => trie.root = Node::from_proto(root),
            None if !p.singleton.is_empty() => {
                trie.root.add(&p.singleton);
            }
            None => {}
        }
        Some(trie)
    }

    /// The encoded `BoundedTrie` proto.
    pub fn encode(&self) -> Vec<u8> {
        use prost::Message;
        pb::BoundedTrie {
            bound: self.bound,
            root: Some(self.root.to_proto()),
            singleton: Vec::new(),
        }
        .encode_to_vec()
    }

    /// Adds one sequence, trimming if the trie outgrows its bound.
    pub fn add(&mut self, segments: &[String]) {
        self.root.add(segments);
        self.trim_to_bound();
    }

    /// Folds `other` in (Beam's `combine`): the union, trimmed to the
    /// smaller bound.
    pub fn merge(&mut self, other: &BoundedTrie) {
        self.root.merge(&other.root);
        self.bound = self.bound.min(other.bound);
        self.trim_to_bound();
    }

    fn trim_to_bound(&mut self) {
        let bound = usize::try_from(self.bound.max(1)).unwrap_or(1);
        while self.root.size > bound && self.root.trim() != 0 {}
    }

    /// Sequences held (a truncated subtree counts once).
    pub fn size(&self) -> usize {
        if self.root.children.is_empty() && !self.root.truncated {
            0
        } else {
            self.root.size
        }
    }

    /// Whether `segments` is in the set (or under a truncated prefix).
    pub fn contains(&self, segments: &[String]) -> bool {
        self.size() > 0 && self.root.contains(segments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    /// A payload as apache-beam 2.77 encodes one:
    /// `BoundedTrieData(singleton=('a', 'b')).to_proto().SerializeToString()`
    /// is `\x08\x64\x1a\x01a\x1a\x01b` (bound 100, singleton a, b).
    #[test]
    fn decodes_beams_singleton_and_merges_bundles() {
        let one = BoundedTrie::decode(b"\x08\x64\x1a\x01a\x1a\x01b").unwrap();
        assert_eq!(one.size(), 1);
        assert!(one.contains(&seq(&["a", "b"])));
        let mut two = BoundedTrie::default();
        two.add(&seq(&["a", "c"]));
        two.add(&seq(&["x"]));
        let mut all = one.clone();
        all.merge(&two);
        assert_eq!(all.size(), 3);
        for s in [&["a", "b"][..], &["a", "c"], &["x"]] {
            assert!(all.contains(&seq(s)), "{s:?}");
        }
        assert!(!all.contains(&seq(&["a", "d"])));
        let back = BoundedTrie::decode(&all.encode()).unwrap();
        assert_eq!(back, all);
    }

    /// Past the bound the largest subtree is truncated: it then stands for
    /// any sequence under its prefix.
    #[test]
    fn trims_the_largest_subtree_past_the_bound() {
        let mut t = BoundedTrie::new(3);
        for s in [["a", "1"], ["a", "2"], ["a", "3"], ["b", "1"]] {
            t.add(&seq(&s));
        }
        assert_eq!(t.size(), 2);
        assert!(t.contains(&seq(&["a", "anything"])));
        assert!(t.contains(&seq(&["b", "1"])));
        assert!(!t.contains(&seq(&["b", "2"])));
    }
}
