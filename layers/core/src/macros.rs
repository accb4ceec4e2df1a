//! Boilerplate every Vitals service shares, written once.

/// `get_ref`, `get_mut` and `into_inner` for a service wrapping its inner service in a field
/// named `inner` of type `S`: put it inside `impl<S> MyService<S> { … }`.
///
/// ```
/// struct Counting<S> {
///     inner: S,
/// }
///
/// impl<S> Counting<S> {
///     vitals_core::inner_service_accessors!();
/// }
///
/// let mut counting = Counting { inner: 1_u8 };
/// *counting.get_mut() += 1;
/// assert_eq!(*counting.get_ref(), 2);
/// assert_eq!(counting.into_inner(), 2);
/// ```
#[macro_export]
macro_rules! inner_service_accessors {
    () => {
        /// The wrapped service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The wrapped service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Unwraps the service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}
