//! [`Trigger`] ⇄ Beam's `Trigger` proto.

use oxbeam_model::pipeline as pb;
use pb::timestamp_transform::TimestampTransform as PbTransform;
use pb::trigger::Trigger as T;

use super::{TimestampTransform, Trigger};
use crate::error::{Error, Result};

/// Deepest trigger tree accepted: a remote SDK must not make us recurse
/// without bound.
const MAX_DEPTH: usize = 64;

fn malformed(message: impl Into<String>) -> Error {
    Error::plan("trigger", message)
}

impl Trigger {
    /// Parses Beam's `Trigger` proto. A message with no trigger set is the
    /// default trigger.
    ///
    /// # Errors
    /// [`Error::Plan`] for a malformed trigger: a missing subtrigger, a
    /// timestamp transform with nothing set, a nesting deeper than 64.
    pub fn from_proto(t: &pb::Trigger) -> Result<Trigger> {
        parse(t, 0)
    }

    /// Writes the trigger as Beam's `Trigger` proto.
    pub fn to_proto(&self) -> pb::Trigger {
        let list = |s: &[Trigger]| s.iter().map(Trigger::to_proto).collect::<Vec<_>>();
        let boxed = |t: &Trigger| Box::new(t.to_proto());
        let trigger = match self {
            Trigger::Default => T::Default(pb::trigger::Default {}),
            Trigger::Never => T::Never(pb::trigger::Never {}),
            Trigger::Always => T::Always(pb::trigger::Always {}),
            Trigger::AfterWatermark { early, late } => {
                T::AfterEndOfWindow(Box::new(pb::trigger::AfterEndOfWindow {
                    early_firings: early.as_deref().map(boxed),
                    late_firings: late.as_deref().map(boxed),
                }))
            }
            Trigger::AfterProcessingTime { transforms } => {
                T::AfterProcessingTime(pb::trigger::AfterProcessingTime {
                    timestamp_transforms: transforms
                        .iter()
                        .map(|t| pb::TimestampTransform {
                            timestamp_transform: Some(match *t {
                                TimestampTransform::Delay { delay_ms } => {
                                    PbTransform::Delay(pb::timestamp_transform::Delay {
                                        delay_millis: delay_ms,
                                    })
                                }
                                TimestampTransform::AlignTo {
                                    period_ms,
                                    offset_ms,
                                } => PbTransform::AlignTo(pb::timestamp_transform::AlignTo {
                                    period: period_ms,
                                    offset: offset_ms,
                                }),
                            }),
                        })
                        .collect(),
                })
            }
            Trigger::AfterSynchronizedProcessingTime => {
                T::AfterSynchronizedProcessingTime(pb::trigger::AfterSynchronizedProcessingTime {})
            }
            Trigger::ElementCount(n) => T::ElementCount(pb::trigger::ElementCount {
                element_count: i32::try_from(*n).unwrap_or(i32::MAX),
            }),
            Trigger::AfterAll(s) => T::AfterAll(pb::trigger::AfterAll {
                subtriggers: list(s),
            }),
            Trigger::AfterAny(s) => T::AfterAny(pb::trigger::AfterAny {
                subtriggers: list(s),
            }),
            Trigger::AfterEach(s) => T::AfterEach(pb::trigger::AfterEach {
                subtriggers: list(s),
            }),
            Trigger::OrFinally { main, finally } => {
                T::OrFinally(Box::new(pb::trigger::OrFinally {
                    main: Some(boxed(main)),
                    finally: Some(boxed(finally)),
                }))
            }
            Trigger::Repeatedly(t) => T::Repeat(Box::new(pb::trigger::Repeat {
                subtrigger: Some(boxed(t)),
            })),
        };
        pb::Trigger {
            trigger: Some(trigger),
        }
    }
}

fn parse(t: &pb::Trigger, depth: usize) -> Result<Trigger> {
    if depth > MAX_DEPTH {
        return Err(malformed(format!("nested deeper than {MAX_DEPTH}")));
    }
    let sub = |t: &pb::Trigger| parse(t, depth + 1);
    let list = |s: &[pb::Trigger], what: &str| -> Result<Vec<Trigger>> {
        if s.is_empty() {
            return Err(malformed(format!("{what} without subtriggers")));
        }
        s.iter().map(sub).collect()
    };
    let required = |t: &Option<Box<pb::Trigger>>, what: &str| -> Result<Box<Trigger>> {
        match t {
            Some(t) => Ok(Box::new(sub(t)?)),
            None => Err(malformed(format!("{what} is missing"))),
        }
    };
    Ok(match &t.trigger {
        None | Some(T::Default(_)) => Trigger::Default,
        Some(T::Never(_)) => Trigger::Never,
        Some(T::Always(_)) => Trigger::Always,
        Some(T::AfterEndOfWindow(w)) => Trigger::AfterWatermark {
            early: w
                .early_firings
                .as_deref()
                .map(sub)
                .transpose()?
                .map(Box::new),
            late: w
                .late_firings
                .as_deref()
                .map(sub)
                .transpose()?
                .map(Box::new),
        },
        Some(T::AfterProcessingTime(p)) => Trigger::AfterProcessingTime {
            transforms: p
                .timestamp_transforms
                .iter()
                .map(|t| match &t.timestamp_transform {
                    Some(PbTransform::Delay(d)) => Ok(TimestampTransform::Delay {
                        delay_ms: d.delay_millis,
                    }),
                    Some(PbTransform::AlignTo(a)) => {
                        if a.period <= 0 {
                            return Err(malformed(format!(
                                "AfterProcessingTime alignment period {} is not positive",
                                a.period
                            )));
                        }
                        Ok(TimestampTransform::AlignTo {
                            period_ms: a.period,
                            offset_ms: a.offset,
                        })
                    }
                    None => Err(malformed("timestamp transform with nothing set")),
                })
                .collect::<Result<_>>()?,
        },
        Some(T::AfterSynchronizedProcessingTime(_)) => Trigger::AfterSynchronizedProcessingTime,
        Some(T::ElementCount(c)) => Trigger::ElementCount(i64::from(c.element_count)),
        Some(T::AfterAll(a)) => Trigger::AfterAll(list(&a.subtriggers, "AfterAll")?),
        Some(T::AfterAny(a)) => Trigger::AfterAny(list(&a.subtriggers, "AfterAny")?),
        Some(T::AfterEach(a)) => Trigger::AfterEach(list(&a.subtriggers, "AfterEach")?),
        Some(T::OrFinally(o)) => Trigger::OrFinally {
            main: required(&o.main, "OrFinally main trigger")?,
            finally: required(&o.finally, "OrFinally finally trigger")?,
        },
        Some(T::Repeat(r)) => {
            Trigger::Repeatedly(required(&r.subtrigger, "Repeatedly subtrigger")?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(t: Trigger) {
        assert_eq!(Trigger::from_proto(&t.to_proto()).unwrap(), t, "{t}");
    }

    #[test]
    fn every_trigger_round_trips() {
        let count = |n| Box::new(Trigger::ElementCount(n));
        round_trip(Trigger::Default);
        round_trip(Trigger::Never);
        round_trip(Trigger::Always);
        round_trip(Trigger::AfterSynchronizedProcessingTime);
        round_trip(Trigger::AfterWatermark {
            early: Some(count(2)),
            late: None,
        });
        round_trip(Trigger::AfterWatermark {
            early: None,
            late: Some(count(1)),
        });
        round_trip(Trigger::AfterProcessingTime {
            transforms: vec![
                TimestampTransform::Delay { delay_ms: 5 },
                TimestampTransform::AlignTo {
                    period_ms: 10,
                    offset_ms: 3,
                },
            ],
        });
        round_trip(Trigger::AfterAll(vec![
            Trigger::ElementCount(1),
            Trigger::Never,
        ]));
        round_trip(Trigger::AfterAny(vec![Trigger::ElementCount(1)]));
        round_trip(Trigger::AfterEach(vec![
            Trigger::ElementCount(1),
            Trigger::Always,
        ]));
        round_trip(Trigger::OrFinally {
            main: Box::new(Trigger::Repeatedly(count(1))),
            finally: count(5),
        });
    }

    #[test]
    fn malformed_triggers_are_plan_errors() {
        let empty_any = pb::Trigger {
            trigger: Some(T::AfterAny(pb::trigger::AfterAny {
                subtriggers: vec![],
            })),
        };
        assert!(matches!(
            Trigger::from_proto(&empty_any),
            Err(Error::Plan { .. })
        ));
        let no_sub = pb::Trigger {
            trigger: Some(T::Repeat(Box::new(pb::trigger::Repeat {
                subtrigger: None,
            }))),
        };
        let e = Trigger::from_proto(&no_sub).unwrap_err();
        assert!(
            e.to_string().contains("Repeatedly subtrigger is missing"),
            "{e}"
        );
        let mut deep = pb::Trigger::default();
        for _ in 0..100 {
            deep = pb::Trigger {
                trigger: Some(T::Repeat(Box::new(pb::trigger::Repeat {
                    subtrigger: Some(Box::new(deep)),
                }))),
            };
        }
        assert!(Trigger::from_proto(&deep).is_err());
        assert_eq!(
            Trigger::from_proto(&pb::Trigger::default()).unwrap(),
            Trigger::Default
        );
    }
}
