//! Pinning: a push that names a tag and no digest (Quay, Docker Hub, Gitea, a generic push
//! without one) is resolved at the registry before it is recorded, so that it deploys
//! `repo@digest` and its id tells a new image of the tag from a redelivery of the same push.
//! A resolution that fails leaves the push as it came, deployed by tag, and says why.

use futures_util::StreamExt as _;

use crate::model::event::{Action, ImageEvent, MAX_EVENT_ID, Parsed, content_id};
use crate::model::reference::{Digest, ImageRef};
use crate::ports::resolver::{ResolveError, Resolver};

/// How many tags are asked at once: a Quay notification may name dozens, and the registry's
/// rate limits count requests, not notifications.
const CONCURRENCY: usize = 8;

/// Resolves every push in `events` that names a tag and no digest, within the resolver's
/// budget for the whole request, and pins those it could. Returns, by position in `events`, why
/// a push was left unpinned (`None`: pinned, or nothing to resolve), for its result to say.
pub(super) async fn pin_all(
    resolver: Option<&dyn Resolver>,
    events: &mut [Parsed],
) -> Vec<Option<String>> {
    let mut why = vec![None; events.len()];
    let Some(resolver) = resolver else {
        return why;
    };
    let wanted: Vec<(usize, ImageRef)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Parsed::Image(e) if needs_pin(e) => Some((i, e.image.clone())),
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return why;
    }
    // One question per reference: a body naming the same tag twice asks once.
    let mut distinct: Vec<&ImageRef> = Vec::with_capacity(wanted.len());
    for (_, image) in &wanted {
        if !distinct.contains(&image) {
            distinct.push(image);
        }
    }
    let budget = resolver.budget();
    let deadline = tokio::time::Instant::now() + budget;
    let timed_out = ResolveError::Timeout(u64::try_from(budget.as_millis()).unwrap_or(u64::MAX));
    let asks: Vec<_> = distinct
        .iter()
        .map(|image| {
            let image = (*image).clone();
            let timed_out = timed_out.clone();
            async move {
                tokio::time::timeout_at(deadline, resolver.resolve(&image))
                    .await
                    .unwrap_or(Err(timed_out))
            }
        })
        .collect();
    let answers: Vec<Result<Digest, ResolveError>> = futures_util::stream::iter(asks)
        .buffered(CONCURRENCY)
        .collect()
        .await;
    for (i, image) in &wanted {
        let Some(answer) = distinct
            .iter()
            .position(|d| *d == image)
            .and_then(|at| answers.get(at))
        else {
            continue;
        };
        let Some(Parsed::Image(event)) = events.get_mut(*i) else {
            continue;
        };
        match answer {
            Ok(digest) => {
                tracing::info!(image = %image, digest = %digest, "tag resolved to its digest");
                pin(event, digest);
            }
            Err(e) => {
                tracing::warn!(image = %image, error = %e, "tag not resolved: deploying by tag");
                why[*i] = Some(format!("could not resolve {image} to a digest: {e}"));
            }
        }
    }
    why
}

fn needs_pin(e: &ImageEvent) -> bool {
    e.action == Action::Push && e.image.tag.is_some() && e.image.digest.is_none()
}

/// The event now names `digest`, and so does its id: the same push delivered again resolves to
/// the same digest and meets its receipt (`duplicate`), while a new image pushed under the same
/// tag, whose notification reads the same, is a new event.
fn pin(event: &mut ImageEvent, digest: &Digest) {
    event.image.digest = Some(digest.clone());
    event.id = pinned_id(&event.id, digest);
}

/// `<id>@<digest>`, within MAX_EVENT_ID: a sender id too long to take the digest is replaced by
/// its hash first.
pub fn pinned_id(id: &str, digest: &Digest) -> String {
    if id.len() + 1 + digest.as_str().len() <= MAX_EVENT_ID {
        format!("{id}@{digest}")
    } else {
        format!("{}@{digest}", content_id(&[id]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::{Provider, Timestamp};
    use std::sync::Mutex;
    use std::time::Duration;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    struct Fixed {
        answer: Result<Digest, ResolveError>,
        delay: Duration,
        asked: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl Resolver for Fixed {
        async fn resolve(&self, image: &ImageRef) -> Result<Digest, ResolveError> {
            self.asked
                .lock()
                .map(|mut a| a.push(image.to_string()))
                .unwrap_or_default();
            tokio::time::sleep(self.delay).await;
            self.answer.clone()
        }
        fn budget(&self) -> Duration {
            Duration::from_millis(500)
        }
    }

    fn push(image: &str, id: &str) -> Parsed {
        Parsed::Image(ImageEvent::new(
            id.to_owned(),
            Provider::Quay,
            Action::Push,
            ImageRef::parse(image).unwrap(),
            Timestamp::now(),
        ))
    }

    fn image_of(p: &Parsed) -> &ImageEvent {
        match p {
            Parsed::Image(e) => e,
            _ => panic!("not an image event"),
        }
    }

    #[tokio::test]
    async fn tags_are_pinned_once_each_and_ids_take_the_digest() {
        let r = Fixed {
            answer: Ok(Digest::parse(D).unwrap()),
            delay: Duration::ZERO,
            asked: Mutex::new(Vec::new()),
        };
        let mut events = vec![
            push("quay.io/org/app:latest", "a"),
            push("quay.io/org/app:latest", "b"),
            push(&format!("quay.io/org/app:v1@{D}"), "c"),
            push("quay.io/org/app", "d"),
        ];
        let why = pin_all(Some(&r), &mut events).await;
        assert_eq!(why, vec![None; 4]);
        assert_eq!(
            r.asked.lock().unwrap().as_slice(),
            ["quay.io/org/app:latest"]
        );
        assert_eq!(image_of(&events[0]).id, format!("a@{D}"));
        assert_eq!(
            image_of(&events[1]).image.digest.as_ref().unwrap().as_str(),
            D
        );
        assert_eq!(image_of(&events[2]).id, "c");
        assert_eq!(image_of(&events[3]).id, "d");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_or_slow_resolution_leaves_the_push_unpinned_and_says_why() {
        for (answer, delay, said) in [
            (
                Err(ResolveError::NotFound("HTTP 404".into())),
                Duration::ZERO,
                "not found: HTTP 404",
            ),
            (
                Ok(Digest::parse(D).unwrap()),
                Duration::from_secs(5),
                "timed out after 500 ms",
            ),
        ] {
            let r = Fixed {
                answer,
                delay,
                asked: Mutex::new(Vec::new()),
            };
            let mut events = vec![push("quay.io/org/app:latest", "a")];
            let why = pin_all(Some(&r), &mut events).await;
            let why = why[0].as_deref().unwrap();
            assert!(
                why.starts_with("could not resolve quay.io/org/app:latest to a digest: ")
                    && why.contains(said),
                "{why}"
            );
            assert_eq!(image_of(&events[0]).id, "a");
            assert_eq!(image_of(&events[0]).image.digest, None);
        }
    }

    #[test]
    fn a_pinned_id_stays_within_the_limit() {
        let d = Digest::parse(D).unwrap();
        assert_eq!(pinned_id("x", &d), format!("x@{D}"));
        let long = "i".repeat(MAX_EVENT_ID);
        let id = pinned_id(&long, &d);
        assert!(id.len() <= MAX_EVENT_ID && id.ends_with(D), "{id}");
        assert_eq!(id, pinned_id(&long, &d));
    }
}
