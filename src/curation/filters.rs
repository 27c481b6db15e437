//! The heuristic quality filters: pure functions of a candidate's texts (and its seed's), each
//! behind one [`Gate`](super::Gate). Thresholds are constants here, recorded in the manifest.
//!
//! Every rule was written against what small models actually produce (SmolLM2-135M on the
//! quickstart seeds) and is tested on hand-written positives and near-miss negatives: a request
//! *about* an HTTP request is not an instruction echo, a request that *asks about* code is not
//! an answer inside the request, "I'm sorry to hear that" is not a refusal.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;

use super::dedup::words;

/// A request of fewer words than this (or than its seed's request, if that is shorter) is too short.
pub const MIN_REQUEST_WORDS: usize = 3;
/// Texts of at least this many words are checked for repetition loops.
pub const REPETITION_MIN_WORDS: usize = 16;
/// A text whose word 3-grams are this share or more repeats of earlier ones is a loop.
pub const REPETITION_RATIO: f64 = 0.3;
/// Or whose word 2-grams are this share or more repeats (loops of short phrases).
pub const REPETITION_BIGRAM_RATIO: f64 = 0.4;
/// A request sharing this share of its word 3-grams (and at least [`ECHO_MIN_SHARED`]) with
/// synth's own instructions restates them.
pub const ECHO_OVERLAP: f64 = 0.5;
pub const ECHO_MIN_SHARED: usize = 4;

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("built-in pattern `{pattern}`: {e}"))
}

/// Word 3-grams, as strings (for overlap with instruction texts).
pub fn trigrams(text: &str) -> HashSet<String> {
    words(text).windows(3).map(|w| w.join(" ")).collect()
}

/// Empty, or fewer words than [`MIN_REQUEST_WORDS`] (or the seed request's count when smaller).
pub fn too_short_request(request: &str, seed_request: &str) -> bool {
    let needed = MIN_REQUEST_WORDS.min(words(seed_request).len().max(1));
    words(request).len() < needed
}

/// No words at all; a bare filler word; or a short preamble that promises content and stops
/// ("Here is the code:").
pub fn too_short_answer(answer: &str) -> bool {
    const FILLERS: [&str; 10] =
        ["n a", "none", "null", "nothing", "answer", "response", "sure", "ok", "okay", "certainly"];
    let words = words(answer);
    words.is_empty()
        || FILLERS.contains(&words.join(" ").as_str())
        || (words.len() <= 12 && answer.trim_end().ends_with(':'))
}

static ECHO_OPENING: LazyLock<Regex> = LazyLock::new(|| {
    regex(concat!(
        r"(?i)^\W*(sure[,!.]?\s*)?(",
        // "Here is a different approach to the request", "Here's one more example"
        r"(here is|here's|here are|this is|below is)\s+(a|an|the|one|my|your)?\s*(new|different|alternative|possible|similar|revised|rewritten|rephrased|another|sample|more|one more)\b[^.:?!\n]{0,40}\b(requests?|examples?|prompts?|approach|version|variation|rewrite|re-write|rewording)\b",
        // "The first example is ...", "A new request: ...", "These examples ..."
        r"|(the|this|a|an|one|another|my)\s+(new|first|second|third|initial|original|previous|given|other|rewritten|revised)\s+(examples?|requests?)\b",
        r"|these (examples|requests)\b",
        // "A user sent a request ...", "This user requested ..."
        r"|(a|the|this|another|one) (different )?user (sent|requested|wrote|asked|might|wants|would)\b",
        r")"
    ))
});

/// Phrases about the synthesis task itself; two or more in one request is an echo.
const META_PHRASES: [&str; 29] = [
    "the request",
    "this request",
    "new request",
    "original request",
    "the example",
    "this example",
    "first example",
    "the examples",
    "other examples",
    "different user",
    "another user",
    "different approach",
    "same topic",
    "same style",
    "something different",
    "something new",
    "rewording",
    "reword",
    "rephrase",
    "preamble",
    "ai assistant",
    "a request",
    "original example",
    "previous example",
    "second example",
    "new example",
    "given example",
    "example's topic",
    "topic of the example",
];

/// The request restates synth's instruction or talks about "the request"/"the example" instead
/// of being one: an opening such as "Here is a different approach to the request", an
/// `<example>` tag, two or more [`META_PHRASES`], or most of its word 3-grams taken from
/// `instructions` (the trigrams of synth's own stage-1 prompts).
pub fn instruction_echo(request: &str, instructions: &HashSet<String>) -> bool {
    let lower = request.to_lowercase();
    let phrase = |p: &str| {
        // Whole words only: `the request` is not in `the requests`.
        lower.match_indices(p).any(|(at, _)| {
            let before = lower[..at].chars().next_back().is_none_or(|c| !c.is_alphanumeric());
            let after = lower[at + p.len()..].chars().next().is_none_or(|c| !c.is_alphanumeric());
            before && after
        })
    };
    if ECHO_OPENING.is_match(request) || lower.contains("<example>") || lower.contains("</example>") {
        return true;
    }
    if META_PHRASES.iter().filter(|p| phrase(p)).count() >= 2 {
        return true;
    }
    let own = trigrams(request);
    let shared = own.iter().filter(|t| instructions.contains(*t)).count();
    shared >= ECHO_MIN_SHARED && shared as f64 >= ECHO_OVERLAP * own.len() as f64
}

/// Words that open a request: imperatives and question words (a sentence starting with one of
/// these asks for something).
const REQUEST_OPENERS: &str =
    "write give explain describe list name suggest translate summarize summarise classify compare create \
     make generate provide tell show help find calculate convert recommend design draft plan compose \
     outline rewrite rephrase define identify analyze analyse evaluate imagine pretend act sort fix \
     implement build teach share solve estimate predict choose pick rank rate review edit proofread \
     correct improve simplify shorten expand continue complete brainstorm propose offer count check \
     determine prove derive debug how what why when where which who whom whose is are can could would \
     should do does";
static REQUEST_PHRASE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)\b(please|can you|could you|would you|will you|i need|i want|i'd like|i would like|help me|let's|i'm looking for|i am looking for|any (tips|ideas|advice|suggestions))\b",
    )
});

/// Whether a text asks for something: a question mark, a sentence that opens with a
/// [`REQUEST_OPENERS`] word, or a phrase such as "please", "can you", "I need".
fn asks(text: &str) -> bool {
    text.contains('?')
        || text.contains('\u{ff1f}')
        || REQUEST_PHRASE.is_match(text)
        || text
            .split(['.', '!', '\n', ':', ';'])
            .any(|sentence| words(sentence).first().is_some_and(|first| REQUEST_OPENERS.split(' ').any(|w| w == first)))
}

/// The request asks for nothing while its seed request does: a statement ("There are 24 hours in
/// a day.", "The sky is a beautiful sight that never goes away.") is an answer or a remark, not
/// a request. A seed that is itself a statement (a chat opener) lets statements through.
pub fn not_a_request(request: &str, seed_request: &str) -> bool {
    asks(seed_request) && !asks(request)
}

static ANSWER_LABEL: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)^\W*(the answer is|answer|response|solution|output|assistant)\s*:"));
static ASSISTANT_OPENING: LazyLock<Regex> = LazyLock::new(|| {
    regex(concat!(
        r"(?i)^\W*(",
        r"(sure|certainly|of course|absolutely|great question)\b[!,.]",
        r"|(happy|glad) to help\b",
        r"|what an? (great|excellent|delightful|wonderful|interesting|fun|fantastic) (question|request|task|idea|challenge)\b",
        r"|an? (great|excellent|interesting|fun) (question|request|task|challenge)[.!]",
        r"|that's an? (great|fun|good|interesting) (question|request|challenge|idea)\b",
        r"|(i'm|i am|i’m) (here|ready) to (help|assist)\b",
        r"|(i'm|i am|i’m) (happy|glad|so glad|more than happy) to (help|assist)( you)?[.!,]",
        r"|(i'd|i would) (love|be happy|be glad) to (help|assist)\b",
        r"|(i'm|i am|i’m) (a|an|your) (helpful )?(ai|assistant|language model)\b",
        r")",
    ))
});
static HELP_OFFER: LazyLock<Regex> = LazyLock::new(|| {
    regex(concat!(
        r"(?i)\b(how (can|may) i (help|assist) you|what (would|do) you (like|want) (to|me to) (know|discuss|ask|do)",
        r"|what can i (do|help you with)|please (go ahead and )?(ask|share) your)\b",
    ))
});

/// The request is an assistant's reply instead of a user's request: it opens as one ("Sure!",
/// "I'm ready to help.", "What a great question!", "I am a helpful AI assistant") or offers
/// help ("How can I assist you today?", "What would you like to know?").
pub fn assistant_voice(request: &str) -> bool {
    ASSISTANT_OPENING.is_match(request.trim()) || HELP_OFFER.is_match(request)
}

static ANSWER_TURN: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?im)(^|[.?!]\s+)(sure[,!.]|certainly[,!.]|of course[,!.]|the answer (is|could be|would be)\b|answer:|solution:|here(?: is|'s) (?:the|a|an|my) (?:code|solution|answer|function|implementation|program|script)\b)|\?\s+here(?: is|'s)\b",
    )
});
static CODE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?m)```|^\s*(def |class \w|function \w|import \w|from \w+ import|#include|public (static )?\w|fn \w|const \w+ =|let \w+ =|var \w+ =|SELECT |return\b)",
    )
});
static ABOUT_CODE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)\b(why|error|errors|bug|fix|debug|wrong|fails?|failing|crash|explain|what does|review|improve|optimi[sz]e|refactor|convert|translate|rewrite|port|comment|document|test|output of)\b",
    )
});

/// The request already holds an answer: it opens with an answer label ("The answer is:"); it
/// goes on from the ask into an answer ("... ? Sure, here is ...", "The answer could be:"); or
/// it carries code its seed request does not, after an ask that is not about that code (asking
/// why code fails, or to review, fix or convert it, is a real request).
pub fn answer_in_request(request: &str, seed_request: &str) -> bool {
    let text = request.trim();
    if ANSWER_LABEL.is_match(text) {
        return true;
    }
    if ANSWER_TURN.find_iter(text).any(|m| m.start() > 0) {
        return true;
    }
    match CODE.find(text) {
        Some(code) if !CODE.is_match(seed_request) => {
            let ask = &text[..code.start()];
            !ABOUT_CODE.is_match(ask)
        }
        _ => false,
    }
}

/// The share of a sequence's word n-grams that repeat an earlier one.
fn repeated_share(words: &[String], n: usize) -> f64 {
    let grams: Vec<&[String]> = words.windows(n).collect();
    let distinct: HashSet<&[String]> = grams.iter().copied().collect();
    (grams.len() - distinct.len()) as f64 / grams.len().max(1) as f64
}

/// A repetition loop: a text of [`REPETITION_MIN_WORDS`] words or more whose word 3-grams are
/// [`REPETITION_RATIO`] or more repeats (or whose 2-grams are [`REPETITION_BIGRAM_RATIO`] or
/// more), or a line of three words or more given four times. (SmolLM2's answers to the
/// quickstart seeds: fluent ones have 0 to 0.2 of their 3-grams repeated, code up to 0.22.)
pub fn repetitive(text: &str) -> bool {
    let words = words(text);
    if words.len() >= REPETITION_MIN_WORDS
        && (repeated_share(&words, 3) >= REPETITION_RATIO || repeated_share(&words, 2) >= REPETITION_BIGRAM_RATIO)
    {
        return true;
    }
    let mut lines: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for line in text.lines() {
        let key = super::dedup::normalized(line);
        if key.split(' ').count() >= 3 {
            let seen = lines.entry(key).or_default();
            *seen += 1;
            if *seen >= 4 {
                return true;
            }
        }
    }
    false
}

static REFUSAL_OPENING: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)^\W*(i'm sorry|i am sorry|i’m sorry|sorry|i apologi[sz]e|my apologies|apologies|unfortunately,? i|i can't|i cannot|i can not|i'm unable|i am unable|i'm not able|i am not able|i won't|i will not)\b",
    )
});
static SYMPATHY: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)^\W*(i'm |i am |i’m )?sorry (to hear|for your loss|about your|you're|you are)"));
static AI_DISCLAIMER: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)\bas an ai\b|\bi'?m (just |only )?an ai\b|\bi am (just |only )?an ai\b|\bas a language model\b")
});

/// A refusal or an apology: the text opens with one ("I'm sorry, but I can't ...", "I cannot
/// help with that", "I apologize for the confusion") or disclaims being an AI anywhere.
/// Sympathy ("I'm sorry to hear that ...") is neither.
pub fn refusal(text: &str) -> bool {
    (REFUSAL_OPENING.is_match(text) && !SYMPATHY.is_match(text)) || AI_DISCLAIMER.is_match(text)
}

/// The seed request's language guess must be at least this sure for [`other_language`] to
/// compare languages (whatlang gives short English questions 0.6 to 0.8).
pub const SEED_LANGUAGE_CONFIDENCE: f64 = 0.5;

/// The request is written in another script than its seed request (Latin, Cyrillic, Han, …),
/// or in another language, when whatlang's trigram detector calls its guess for the request
/// reliable and is at least [`SEED_LANGUAGE_CONFIDENCE`] sure of the seed's (short texts are
/// never judged on language, only on script).
pub fn other_language(request: &str, seed_request: &str) -> bool {
    let (Some(seed_script), Some(script)) = (whatlang::detect_script(seed_request), whatlang::detect_script(request))
    else {
        return false;
    };
    if seed_script != script {
        return true;
    }
    match (whatlang::detect(seed_request), whatlang::detect(request)) {
        (Some(seed), Some(new)) => {
            new.is_reliable() && seed.confidence() >= SEED_LANGUAGE_CONFIDENCE && seed.lang() != new.lang()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Requests SmolLM2-135M-Instruct wrote for the quickstart seeds (`synth run
    // recipes/quickstart.json --num-samples 64`), and hand-written near misses that must pass.

    fn instructions() -> HashSet<String> {
        let mut texts = vec![crate::synthesis::prompts::request_prompt("")];
        texts.push(crate::synthesis::prompts::variant_prompt("", &[], "harder: one that needs more steps"));
        texts.iter().flat_map(|t| trigrams(t)).collect()
    }

    #[test]
    fn instruction_echo_catches_talk_about_the_task() {
        let i = instructions();
        for echo in [
            // The quickstart row the issue quotes.
            "Here is a different approach to the request:\n\nGive a healthy breakfast idea.\n- Instead of the original \
             request\n- Ask about something that is different and provides something new.",
            "Create a new request that asks a different user to send you a review in a different style and with a \
             different tone.",
            "The first example is more creative and engaging, but it's a reworded version of the original example.",
            "A user sent a request to you for a new way to store fresh basil, which they believe is supposed to last \
             longer.",
            "Here's one more example:\n\n<example>\nThe difference between a list and a tuple in Python is that ...",
            "Write one new request that a different user might send, in the spirit of the first example but mixing \
             the first example's topic with the topic of one of the other examples.",
            "These examples are all from different users' lists.",
            "<example>\nAtmospheric carbon dioxide molecules absorb sunlight.",
            "Provide a response that incorporates the topic of the example while also using the example's topic in a \
             different way.",
        ] {
            assert!(instruction_echo(echo, &i), "not caught: {echo}");
        }
    }

    #[test]
    fn instruction_echo_passes_requests_that_mention_requests_or_examples() {
        let i = instructions();
        for fine in [
            "How do I read the request body in an Express handler?",
            "Can you explain the example on page 12 of my physics book? It uses a pulley.",
            "Here is my essay introduction. Can you make it punchier?",
            "Write a polite email declining a meeting request from a colleague.",
            "Give three tips for a first job interview at a bakery.",
            "What is a good way to keep cilantro fresh for a week?",
        ] {
            assert!(!instruction_echo(fine, &i), "dropped: {fine}");
        }
    }

    #[test]
    fn assistant_voice_catches_replies_written_as_requests() {
        for reply in [
            "I'm ready to help. What would you like to know?",
            "I'm ready to assist you. How can I assist you better today?",
            "I'd love to help with your request!",
            "What a great question! Let's make it fun and exciting for a child to understand.",
            "I am a helpful AI assistant named SmolLM, trained by AdversaryBun.",
            "I'm here to help you optimize your basil recipes. What's a good way to use it?",
            "Sure! Here is a haiku about spring wind.",
        ] {
            assert!(assistant_voice(reply), "not caught: {reply}");
        }
        for fine in [
            "I'm ready to start my first job next week. How should I prepare?",
            "I'm happy to help my neighbor move. What should I bring?",
            "Sure-fire ways to keep bread from going stale?",
            "What would a good name be for a bakery by the sea?",
            "I am a nurse on night shifts. How can I sleep better during the day?",
        ] {
            assert!(!assistant_voice(fine), "dropped: {fine}");
        }
    }

    #[test]
    fn answer_in_request_catches_answers_and_code_that_was_asked_for() {
        let code_seed = "Write a Python function that returns the largest number in a list.";
        let plain_seed = "What is the capital of Australia?";
        for (request, seed) in [
            // The quickstart row the issue quotes: the request carries its own answer, with code.
            (
                "Write a Python function that returns the largest number in a list.\n\nThe answer could be:\n\n\
                 ```python\ndef find_largest_number(lst):\n    return max(lst)\n```",
                plain_seed,
            ),
            (
                "Provide a function that finds the largest number in a list that is a multiple of 5.\n\n```python\n\
                 def find_largest_multiple_of_5(lst):\n    return max(lst)\n```",
                code_seed,
            ),
            ("The answer is: What is the capital of Australia?", plain_seed),
            ("What is the capital of Canada? Sure, here is the answer: Ottawa.", plain_seed),
            (
                "What is the difference between a list and a tuple in Python?\n\nOutput:\nThe answer is an answer.",
                plain_seed,
            ),
        ] {
            assert!(answer_in_request(request, seed), "not caught: {request}");
        }
        for (request, seed) in [
            ("Why does this fail with a KeyError?\n\n```python\nd = {}\nprint(d['x'])\n```", code_seed),
            ("Convert this loop to a list comprehension:\n```python\nout = []\nfor x in xs:\n    out.append(x * 2)\n```", code_seed),
            ("I have a list of numbers. Here is the list: 3, 5, 9. How do I sort it?", plain_seed),
            ("Write a Python function that returns the second largest number in a list.", code_seed),
            ("What is the capital of New Zealand, and why is it not Auckland?", plain_seed),
        ] {
            assert!(!answer_in_request(request, seed), "dropped: {request}");
        }
    }

    #[test]
    fn not_a_request_catches_statements_where_the_seed_asks() {
        let seed = "How many minutes are there in a day?";
        for statement in [
            "There are 24 hours in a day.",
            "A good way to store fresh basil so it lasts longer is to place it in a glass with a glass of wine.",
            "The sky is a beautiful sight that never goes away.",
            "I'm afraid that's not within the scope of a typical response. However, I'll provide a different example.",
            "The committee met on Tuesday and decided to postpone the vote until more information is available.",
        ] {
            assert!(not_a_request(statement, seed), "not caught: {statement}");
        }
        for request in [
            "How many seconds are there in a week?",
            "Give one healthy lunch idea.",
            "Summarize the following paragraph in one sentence.\n\nThe council voted to close the library on Sundays.",
            "I need a name for my new bakery in a seaside town.",
            "My tomato leaves are turning yellow. Any tips",
            "Name a renewable source of energy and say how it works in one sentence.",
        ] {
            assert!(!not_a_request(request, seed), "dropped: {request}");
        }
        assert!(
            !not_a_request("I had a rough day at work today.", "I just got back from a long hike."),
            "the seed is a statement too"
        );
    }

    #[test]
    fn repetition_catches_loops_not_lists() {
        for looped in [
            "I'm sure you're right. You're right. I'm sure you're right, but I'm not sure how to add it. I'm not \
             sure I'm right, and I'm not sure I'm right. You're right, and I'm not right.",
            "In a world of endless possibilities,\nThe answer to the question of what the weather is,\nIn a world of \
             endless possibilities,\nThe answer to the question of what the weather is,\nIn a world of endless \
             possibilities,\nThe answer to the question of what the weather is,",
            "The battery died after two days.\nThe battery died after two days.\nThe battery died after two days.\n\
             The battery died after two days.",
        ] {
            assert!(repetitive(looped), "not caught: {looped}");
        }
        for fine in [
            "1. Research the company beforehand. 2. Prepare short stories that show your skills. 3. Ask a \
             thoughtful question at the end.",
            "Sunlight is scattered by the molecules in the air, and blue light is scattered much more than red light \
             because of its shorter wavelength. So when we look at the sky away from the sun, we see mostly that \
             scattered blue light.",
            "def largest(numbers):\n    best = numbers[0]\n    for n in numbers:\n        if n > best:\n            \
             best = n\n    return best",
            "Cold rain on red leaves\nthe gutter hums a low song\nstreetlights blur to gold",
        ] {
            assert!(!repetitive(fine), "dropped: {fine}");
        }
    }

    #[test]
    fn refusal_catches_refusals_and_apologies_not_sympathy() {
        for refused in [
            "I'm sorry, but I can't help with that request.",
            "I apologize for the confusion, but I cannot provide that information.",
            "As an AI language model, I do not have personal opinions about bakeries.",
            "I cannot write content that could be used to harm others.",
            "Unfortunately, I don't have access to real-time weather data.",
        ] {
            assert!(refusal(refused), "not caught: {refused}");
        }
        for fine in [
            "I'm sorry to hear your basil wilted! Trim the stems and keep them in water.",
            "Sorry about your interview nerves: practise your answers aloud the night before.",
            "The customer wrote \"I cannot help you\" and hung up. How should I reply politely?",
            "Canberra.",
        ] {
            assert!(!refusal(fine), "dropped: {fine}");
        }
    }

    #[test]
    fn too_short_is_relative_to_the_seed_and_catches_empty_promises() {
        assert!(too_short_request("Basil?", "What is a good way to store fresh basil so it lasts longer?"));
        assert!(too_short_request("  ", "Hi"));
        assert!(!too_short_request("Hello", "Hi"), "a one-word seed allows one-word requests");
        assert!(!too_short_request("Name a bakery.", "Suggest a name for a small bakery in a seaside town."));
        assert!(too_short_answer("Here is the code:"));
        assert!(too_short_answer("Sure! Here's a haiku about autumn rain:"));
        assert!(too_short_answer("..."));
        assert!(too_short_answer("OK"));
        assert!(!too_short_answer("Canberra."));
        assert!(!too_short_answer("Spanish: buenos días. French: bonjour."));
        assert!(!too_short_answer("Here are three tips:\n1. Research the company.\n2. Practise.\n3. Ask questions."));
    }

    #[test]
    fn other_language_compares_script_then_reliable_language() {
        let seed = "What is a good way to store fresh basil so it lasts longer?";
        assert!(other_language("Как лучше всего хранить свежий базилик, чтобы он дольше оставался свежим?", seed));
        assert!(other_language("新鲜的罗勒怎么保存才能放得更久？", seed));
        assert!(other_language(
            "¿Cuál es la mejor manera de guardar la albahaca fresca para que dure más tiempo en la cocina?",
            seed
        ));
        assert!(!other_language("How should I store fresh mint so that it stays green for a whole week?", seed));
        // A short request is judged on its script only.
        assert!(!other_language("Pesto, por favor?", seed));
        let spanish_seed = "¿Cuál es la capital de Australia y por qué no es Sídney, la ciudad más grande?";
        assert!(!other_language(
            "¿Cuál es la capital de Canadá y por qué no es Toronto, la ciudad más grande?",
            spanish_seed
        ));
    }
}
