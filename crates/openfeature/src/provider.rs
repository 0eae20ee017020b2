//! The provider: a flag set in memory, evaluated per call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use backout_flags::{FlagSet, FlagType, Reason, Resolution};
use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{
    EvaluationContext, EvaluationError, EvaluationErrorCode, EvaluationResult, StructValue, Value,
};
use serde_json::Value as Json;

use crate::{clock, convert};

/// Where a provider's flag set is swapped, shared by the provider and
/// whatever keeps the set current (the sync task, or the application).
#[derive(Clone)]
pub struct FlagSetHandle {
    flags: Arc<ArcSwap<FlagSet>>,
    stale: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
}

impl FlagSetHandle {
    /// Serves `flags` from now on (one atomic swap).
    pub fn replace(&self, flags: FlagSet) {
        self.flags.store(Arc::new(flags));
        self.stale.store(false, Ordering::Release);
        self.ready.store(true, Ordering::Release);
    }

    /// Confirms the served set is current (its source answered "unchanged").
    pub fn confirm_current(&self) {
        self.stale.store(false, Ordering::Release);
    }

    /// Marks the served set as possibly out of date (its source is
    /// unreachable); results then carry `backout.stale` in their metadata.
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }

    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// The served flag set.
    pub fn current(&self) -> Arc<FlagSet> {
        self.flags.load_full()
    }
}

/// An OpenFeature provider evaluating backout flags in process.
pub struct BackoutProvider {
    handle: FlagSetHandle,
    metadata: ProviderMetadata,
}

impl BackoutProvider {
    /// A provider serving `flags`.
    pub fn new(flags: FlagSet) -> BackoutProvider {
        let provider = BackoutProvider::empty();
        provider.handle.replace(flags);
        provider
    }

    /// A provider with no flags yet: not ready until a set arrives.
    pub fn empty() -> BackoutProvider {
        BackoutProvider {
            handle: FlagSetHandle {
                flags: Arc::new(ArcSwap::from_pointee(FlagSet::default())),
                stale: Arc::new(AtomicBool::new(false)),
                ready: Arc::new(AtomicBool::new(false)),
            },
            metadata: ProviderMetadata::new("backout"),
        }
    }

    /// The handle to swap this provider's flag set.
    pub fn handle(&self) -> FlagSetHandle {
        self.handle.clone()
    }

    fn resolve<T>(
        &self,
        key: &str,
        ctx: &EvaluationContext,
        ty: FlagType,
        extract: impl FnOnce(&Json) -> Option<T>,
    ) -> EvaluationResult<ResolutionDetails<T>> {
        if !self.handle.ready.load(Ordering::Acquire) {
            return Err(EvaluationError {
                code: EvaluationErrorCode::ProviderNotReady,
                message: Some("no flag set has been loaded yet".into()),
            });
        }
        let flags = self.handle.flags.load();
        let ctx = convert::context(ctx);
        let res: Resolution<'_> = flags.evaluate(key, &ctx, clock::unix_now()).typed(ty);
        if let Some(e) = &res.error {
            return Err(convert::error(e));
        }
        let Some(value) = res.value else {
            // Disabled, or no default variant: the caller's default applies.
            let why = match res.reason {
                Reason::Disabled => "is disabled",
                _ => "has no default variant and no rule matched",
            };
            return Err(EvaluationError {
                code: EvaluationErrorCode::General(format!(
                    "DEFER_TO_DEFAULT ({})",
                    res.reason.as_str()
                )),
                message: Some(format!("flag `{key}` {why}; use the caller's default")),
            });
        };
        let Some(value) = extract(value) else {
            return Err(EvaluationError {
                code: EvaluationErrorCode::TypeMismatch,
                message: Some(format!("flag `{key}` has value {value}")),
            });
        };
        Ok(ResolutionDetails {
            value,
            variant: res.variant.map(str::to_owned),
            reason: Some(convert::reason(res.reason)),
            flag_metadata: Some(convert::metadata(res.metadata, self.handle.is_stale())),
        })
    }
}

#[async_trait]
impl FeatureProvider for BackoutProvider {
    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    fn status(&self) -> ProviderStatus {
        if !self.handle.ready.load(Ordering::Acquire) {
            ProviderStatus::NotReady
        } else if self.handle.is_stale() {
            ProviderStatus::STALE
        } else {
            ProviderStatus::Ready
        }
    }

    async fn resolve_bool_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        self.resolve(key, ctx, FlagType::Bool, Json::as_bool)
    }

    async fn resolve_int_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        self.resolve(key, ctx, FlagType::Int, Json::as_i64)
    }

    async fn resolve_float_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        self.resolve(key, ctx, FlagType::Float, Json::as_f64)
    }

    async fn resolve_string_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        self.resolve(key, ctx, FlagType::String, |v| {
            v.as_str().map(str::to_owned)
        })
    }

    async fn resolve_struct_value(
        &self,
        key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        self.resolve(key, ctx, FlagType::Object, |v| {
            match convert::to_value(v)? {
                Value::Struct(s) => Some(s),
                // An array flag has no struct form.
                _ => None,
            }
        })
    }
}
