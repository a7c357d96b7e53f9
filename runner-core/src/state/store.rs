//! [`StateStore`]: user state cells in memory, addressed as Beam's State API
//! addresses them.

use std::collections::{BTreeMap, HashMap};

use oxbeam_model::coders::Coder;

use super::{StateError, window_max_timestamp};
use crate::coder::read_varint;

/// Which part of a user state cell a request addresses (Beam's user state
/// `StateKey` kinds; the same shape as `oxbeam_fn_api::UserStateKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateKind<'a> {
    /// `BagUserState`: concatenated values in append order.
    Bag,
    /// `MultimapKeysUserState`: the map keys (sorted by their encoding);
    /// clear removes every entry; append is an error.
    MultimapKeys,
    /// `MultimapUserState`: the values under one encoded map key.
    Multimap {
        /// The map key, nested-encoded.
        map_key: &'a [u8],
    },
    /// `OrderedListUserState`: entries `varint(sort key) ++ length-prefixed
    /// value` with sort key in `[start, end)`.
    OrderedList {
        /// Inclusive lower bound.
        start: i64,
        /// Exclusive upper bound.
        end: i64,
    },
}

/// The address of one user state cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CellRef<'a> {
    /// Transform owning the state.
    pub transform: &'a str,
    /// State id in the transform's `ParDoPayload.state_specs`.
    pub state_id: &'a str,
    /// Encoded window.
    pub window: &'a [u8],
    /// Encoded (nested) user key.
    pub key: &'a [u8],
}

#[derive(serde::Serialize, serde::Deserialize)]
enum Cell {
    Bag(Vec<u8>),
    Multimap(BTreeMap<Vec<u8>, Vec<u8>>),
    /// Entries by (sort key, insertion sequence).
    OrderedList(BTreeMap<(i64, u64), Vec<u8>>),
}

impl Cell {
    fn kind_name(&self) -> &'static str {
        match self {
            Cell::Bag(_) => "bag",
            Cell::Multimap(_) => "multimap",
            Cell::OrderedList(_) => "ordered list",
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Cell::Bag(b) => b.is_empty(),
            Cell::Multimap(m) => m.is_empty(),
            Cell::OrderedList(l) => l.is_empty(),
        }
    }
}

/// In-memory user state: every cell of every (transform, state id, window,
/// key), as Beam's State API sees them (bags, multimaps, ordered lists).
///
/// One store serves one stateful stage (or one key partition of it): the
/// runner makes sure a key is never in two concurrent bundles, so the store
/// needs no locking of its own. Adapt it to `oxbeam_fn_api::UserState` with
/// a thin wrapper (runner-core does not depend on the Fn API crate), as
/// runner-local's batch engine does.
///
/// Cost: one hash lookup per request on a key built from the address
/// (no allocation when the cell exists); values are kept encoded.
#[derive(Default)]
pub struct StateStore {
    /// By address: `varint(window len) window transform \0 state \0 key`.
    cells: HashMap<Vec<u8>, Cell>,
    scratch: Vec<u8>,
    sequence: u64,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("cells", &self.cells.len())
            .finish()
    }
}

fn address(out: &mut Vec<u8>, cell: &CellRef<'_>) {
    out.clear();
    crate::coder::write_varint(out, cell.window.len() as u64);
    out.extend_from_slice(cell.window);
    out.extend_from_slice(cell.transform.as_bytes());
    out.push(0);
    out.extend_from_slice(cell.state_id.as_bytes());
    out.push(0);
    out.extend_from_slice(cell.key);
}

/// The window bytes of an address.
fn window_of(address: &[u8]) -> &[u8] {
    let mut rest = address;
    match read_varint(&mut rest) {
        Ok(n) => rest.get(..n as usize).unwrap_or_default(),
        Err(_) => &[],
    }
}

/// Splits ordered-list entries (`varint(sort key) ++ length-prefixed value`).
fn ordered_entries(mut data: &[u8]) -> Result<Vec<(i64, &[u8])>, StateError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let start = data;
        let sort_key = read_varint(&mut data)
            .map_err(|e| StateError(format!("ordered list entry: {e}")))?
            as i64;
        let len = read_varint(&mut data)
            .map_err(|e| StateError(format!("ordered list entry: {e}")))?
            as usize;
        if data.len() < len {
            return Err(StateError(format!(
                "ordered list entry of {len} bytes, but only {} follow",
                data.len()
            )));
        }
        data = &data[len..];
        out.push((sort_key, &start[..start.len() - data.len()]));
    }
    Ok(out)
}

impl StateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of non-empty cells.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Every cell, as bytes for a checkpoint (see [`crate::snapshot`]).
    pub fn snapshot(&self) -> Vec<u8> {
        crate::snapshot::encode(&(&self.cells, self.sequence))
    }

    /// Replaces every cell with a [`snapshot`](Self::snapshot)'s.
    ///
    /// # Errors
    /// If the bytes are not a snapshot; the store is unchanged.
    pub fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateError> {
        let (cells, sequence) =
            crate::snapshot::decode("user state", snapshot).map_err(StateError)?;
        self.cells = cells;
        self.sequence = sequence;
        Ok(())
    }

    /// Whether no cell holds anything.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    fn mismatch(cell: &Cell, cell_ref: &CellRef<'_>, wanted: &str) -> StateError {
        StateError(format!(
            "state {:?} of transform {:?} is a {}, not a {wanted}",
            cell_ref.state_id,
            cell_ref.transform,
            cell.kind_name()
        ))
    }

    /// Appends the contents `kind` addresses to `out`.
    ///
    /// # Errors
    /// If the cell exists with another kind.
    pub fn get(
        &mut self,
        cell_ref: &CellRef<'_>,
        kind: StateKind<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), StateError> {
        address(&mut self.scratch, cell_ref);
        let Some(cell) = self.cells.get(&self.scratch) else {
            return Ok(());
        };
        match (kind, cell) {
            (StateKind::Bag, Cell::Bag(b)) => out.extend_from_slice(b),
            (StateKind::MultimapKeys, Cell::Multimap(m)) => {
                m.keys().for_each(|k| out.extend_from_slice(k));
            }
            (StateKind::Multimap { map_key }, Cell::Multimap(m)) => {
                if let Some(v) = m.get(map_key) {
                    out.extend_from_slice(v);
                }
            }
            (StateKind::OrderedList { start, end }, Cell::OrderedList(l)) => {
                if start < end {
                    l.range((start, 0)..(end, 0))
                        .for_each(|(_, e)| out.extend_from_slice(e));
                }
            }
            (k, c) => return Err(Self::mismatch(c, cell_ref, kind_name(&k))),
        }
        Ok(())
    }

    /// Appends `data` (whole encoded values) to the cell.
    ///
    /// # Errors
    /// If the cell exists with another kind, for appends to
    /// [`StateKind::MultimapKeys`], and for malformed ordered-list entries.
    pub fn append(
        &mut self,
        cell_ref: &CellRef<'_>,
        kind: StateKind<'_>,
        data: &[u8],
    ) -> Result<(), StateError> {
        if data.is_empty() {
            return Ok(());
        }
        address(&mut self.scratch, cell_ref);
        let fresh = || match kind {
            StateKind::Bag => Ok(Cell::Bag(Vec::new())),
            StateKind::Multimap { .. } => Ok(Cell::Multimap(BTreeMap::new())),
            StateKind::OrderedList { .. } => Ok(Cell::OrderedList(BTreeMap::new())),
            StateKind::MultimapKeys => Err(StateError(format!(
                "cannot append to the keys of multimap state {:?} of transform {:?}",
                cell_ref.state_id, cell_ref.transform
            ))),
        };
        if !self.cells.contains_key(&self.scratch) {
            self.cells.insert(self.scratch.clone(), fresh()?);
        }
        let Some(cell) = self.cells.get_mut(&self.scratch) else {
            return Ok(());
        };
        match (kind, cell) {
            (StateKind::Bag, Cell::Bag(b)) => b.extend_from_slice(data),
            (StateKind::Multimap { map_key }, Cell::Multimap(m)) => match m.get_mut(map_key) {
                Some(v) => v.extend_from_slice(data),
                None => {
                    m.insert(map_key.to_vec(), data.to_vec());
                }
            },
            (StateKind::OrderedList { .. }, Cell::OrderedList(l)) => {
                for (sort_key, entry) in ordered_entries(data)? {
                    self.sequence += 1;
                    l.insert((sort_key, self.sequence), entry.to_vec());
                }
            }
            (k, c) => return Err(Self::mismatch(c, cell_ref, kind_name(&k))),
        }
        Ok(())
    }

    /// Removes what `kind` addresses.
    ///
    /// # Errors
    /// If the cell exists with another kind.
    pub fn clear(&mut self, cell_ref: &CellRef<'_>, kind: StateKind<'_>) -> Result<(), StateError> {
        address(&mut self.scratch, cell_ref);
        let Some(cell) = self.cells.get_mut(&self.scratch) else {
            return Ok(());
        };
        match (kind, &mut *cell) {
            (StateKind::Bag, Cell::Bag(b)) => b.clear(),
            (StateKind::MultimapKeys, Cell::Multimap(m)) => m.clear(),
            (StateKind::Multimap { map_key }, Cell::Multimap(m)) => {
                m.remove(map_key);
            }
            (StateKind::OrderedList { start, end }, Cell::OrderedList(l)) => {
                if start < end {
                    let doomed: Vec<(i64, u64)> =
                        l.range((start, 0)..(end, 0)).map(|(k, _)| *k).collect();
                    for k in doomed {
                        l.remove(&k);
                    }
                }
            }
            (k, c) => return Err(Self::mismatch(c, cell_ref, kind_name(&k))),
        }
        if cell.is_empty() {
            self.cells.remove(&self.scratch);
        }
        Ok(())
    }

    /// Garbage-collects the state of expired windows: every cell whose
    /// window (decoded with `window_coder`) has
    /// `max_timestamp + allowed_lateness_ms < input_watermark`. Windows of
    /// other coders than global and interval are kept. Returns the number of
    /// cells removed.
    pub fn expire(
        &mut self,
        input_watermark: i64,
        allowed_lateness_ms: i64,
        window_coder: &Coder,
    ) -> usize {
        let before = self.cells.len();
        self.cells.retain(|address, _| {
            match window_max_timestamp(window_of(address), window_coder) {
                Some(max) => max.saturating_add(allowed_lateness_ms) >= input_watermark,
                None => true,
            }
        });
        before - self.cells.len()
    }

    /// Removes every cell.
    pub fn clear_all(&mut self) {
        self.cells.clear();
    }
}

fn kind_name(kind: &StateKind<'_>) -> &'static str {
    match kind {
        StateKind::Bag => "bag",
        StateKind::MultimapKeys | StateKind::Multimap { .. } => "multimap",
        StateKind::OrderedList { .. } => "ordered list",
    }
}
