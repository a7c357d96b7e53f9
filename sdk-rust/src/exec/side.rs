//! Side inputs inside the executor: decoding a side PCollection once per
//! bundle, building the view per side window, and mapping main-input windows
//! to side windows.

use std::any::Any;
use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use oxbeam_model::coders::{WindowCoder, WindowedValueHeader};
use oxbeam_model::window::BoundedWindow;

use super::Cx;
use super::hash::FxHashMap;
use crate::coder::{Coder, Element};
use crate::window::WindowFn;

/// A built view, downcast by the typed side-input handle.
pub(crate) type View = Arc<dyn Any + Send + Sync>;

/// Builds views of one kind from a side input's encoded elements.
pub(crate) trait ViewBuilder: Send + Sync {
    /// One view per window that has elements.
    fn build(
        &self,
        bytes: &[u8],
        window_coder: WindowCoder,
    ) -> Result<Vec<(BoundedWindow, View)>, String>;
    /// The view of a window without elements.
    fn empty(&self) -> Result<View, String>;
}

fn decode_all<T: Element>(
    bytes: &[u8],
    wc: WindowCoder,
) -> Result<Vec<(BoundedWindow, Vec<T>)>, String> {
    let coder = T::Coder::default();
    let mut input = bytes;
    let mut index: FxHashMap<BoundedWindow, usize> = FxHashMap::default();
    let mut out: Vec<(BoundedWindow, Vec<T>)> = Vec::new();
    while !input.is_empty() {
        let h = WindowedValueHeader::decode(&mut input, wc).map_err(|e| e.to_string())?;
        let v = coder.decode(&mut input).map_err(|e| e.to_string())?;
        for w in h.windows.iter() {
            let i = *index.entry(*w).or_insert_with(|| {
                out.push((*w, Vec::new()));
                out.len() - 1
            });
            out[i].1.push(v.clone());
        }
    }
    Ok(out)
}

/// Views as `Vec<T>` (list and iterable views).
pub(crate) struct ListViewBuilder<T>(pub PhantomData<fn() -> T>);

impl<T: Element> ViewBuilder for ListViewBuilder<T> {
    fn build(&self, bytes: &[u8], wc: WindowCoder) -> Result<Vec<(BoundedWindow, View)>, String> {
        Ok(decode_all::<T>(bytes, wc)?
            .into_iter()
            .map(|(w, v)| (w, Arc::new(v) as View))
            .collect())
    }
    fn empty(&self) -> Result<View, String> {
        Ok(Arc::new(Vec::<T>::new()))
    }
}

/// Views as a single `T`.
pub(crate) struct SingletonViewBuilder<T> {
    pub default: Option<T>,
}

impl<T: Element> ViewBuilder for SingletonViewBuilder<T> {
    fn build(&self, bytes: &[u8], wc: WindowCoder) -> Result<Vec<(BoundedWindow, View)>, String> {
        decode_all::<T>(bytes, wc)?
            .into_iter()
            .map(|(w, mut v)| {
                if v.len() == 1 {
                    Ok((w, Arc::new(v.swap_remove(0)) as View))
                } else {
                    Err(format!(
                        "singleton side input has {} elements in window {w:?}; expected exactly one",
                        v.len()
                    ))
                }
            })
            .collect()
    }
    fn empty(&self) -> Result<View, String> {
        match &self.default {
            Some(d) => Ok(Arc::new(d.clone())),
            None => Err("singleton side input is empty and has no default value".into()),
        }
    }
}

/// Views as `HashMap<K, Vec<V>>`.
pub(crate) struct MultimapViewBuilder<K, V>(pub PhantomData<fn() -> (K, V)>);

impl<K: Element + Hash + Eq, V: Element> ViewBuilder for MultimapViewBuilder<K, V> {
    fn build(&self, bytes: &[u8], wc: WindowCoder) -> Result<Vec<(BoundedWindow, View)>, String> {
        Ok(decode_all::<(K, V)>(bytes, wc)?
            .into_iter()
            .map(|(w, kvs)| {
                let mut m: HashMap<K, Vec<V>> = HashMap::new();
                for (k, v) in kvs {
                    m.entry(k).or_default().push(v);
                }
                (w, Arc::new(m) as View)
            })
            .collect())
    }
    fn empty(&self) -> Result<View, String> {
        Ok(Arc::new(HashMap::<K, Vec<V>>::new()))
    }
}

/// One side input of a ParDo operator.
pub(crate) struct SideSlot {
    pub local_name: String,
    pub transform_id: String,
    pub window_coder: WindowCoder,
    pub mapping: WindowFn,
    pub builder: Arc<dyn ViewBuilder>,
    views: Option<FxHashMap<BoundedWindow, View>>,
}

impl SideSlot {
    pub fn new(
        local_name: String,
        transform_id: String,
        window_coder: WindowCoder,
        mapping: WindowFn,
        builder: Arc<dyn ViewBuilder>,
    ) -> Self {
        SideSlot {
            local_name,
            transform_id,
            window_coder,
            mapping,
            builder,
            views: None,
        }
    }
}

/// The side inputs of one ParDo operator, decoded lazily once per bundle.
#[derive(Default)]
pub(crate) struct SideCache {
    pub slots: Vec<SideSlot>,
}

impl SideCache {
    /// Forgets the previous bundle's views.
    pub fn reset(&mut self) {
        for s in &mut self.slots {
            s.views = None;
        }
    }

    /// The view of side input `local_name` for main-input window `main`.
    pub fn get(
        &mut self,
        local_name: &str,
        main: &BoundedWindow,
        cx: &dyn Cx,
    ) -> Result<View, String> {
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.local_name == local_name)
            .ok_or_else(|| format!("side input {local_name:?} was not declared on this ParDo"))?;
        if slot.views.is_none() {
            let bytes = cx
                .side_input(&slot.transform_id, &slot.local_name)
                .map_err(|e| e.to_string())?;
            let views = slot.builder.build(bytes, slot.window_coder)?;
            slot.views = Some(views.into_iter().collect());
        }
        let side_window = slot.mapping.side_input_window(main)?;
        match slot.views.as_ref().and_then(|v| v.get(&side_window)) {
            Some(v) => Ok(v.clone()),
            None => slot.builder.empty(),
        }
    }
}
