//! Constants of Clerk's protocol that both the verifier and the issuer must agree on.

/// The `Clerk-API-Version` header every call to Clerk's Backend API sends, as Clerk's backend SDK
/// (`@clerk/backend` 3.x) does. `tower-machine-auth` re-exports it.
///
/// ```
/// assert_eq!(machine_auth_core::clerk::CLERK_API_VERSION, "2026-05-12");
/// ```
pub const CLERK_API_VERSION: &str = "2026-05-12";

/// Clerk's JWT category (header `cat`) of machine-to-machine tokens: the issuer writes it, the
/// verifier tells M2M tokens from Clerk's other kinds by it.
///
/// ```
/// assert_eq!(machine_auth_core::clerk::M2M_TOKEN_CATEGORY, "cl_B7d4PD333AAA");
/// ```
pub const M2M_TOKEN_CATEGORY: &str = "cl_B7d4PD333AAA";
