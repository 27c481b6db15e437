//! The instructions general synthesis gives the model: what it is asked to write for a new
//! request, a later variant and a follow-up turn. Curation reads them too (`instructionEcho`:
//! a "request" that restates them), so they live apart from the pipeline.

/// The instruction that turns a seed request into a new one (variant 0: the first pass).
pub fn request_prompt(seed_request: &str) -> String {
    format!(
        "Here is an example of a request a user sent to an AI assistant:\n\n<example>\n{}\n</example>\n\n\
         Write one new request that a different user might send: on the same topic and in the same style, \
         but asking for something different. Reply with the new request only, without any preamble, quotes or answer.",
        seed_request.trim()
    )
}

/// How a later variant moves away from its seed: one is drawn per variant.
pub const DIRECTIONS: [&str; 8] = [
    "narrower: about one specific detail of the first example's topic",
    "broader: about the wider subject the first example's topic belongs to",
    "harder: one that needs more steps, more knowledge or more careful reasoning to answer",
    "for another audience: written by a child, a beginner or an expert instead",
    "asking for another format: a list, a table, a short story, a step-by-step plan, a letter or code",
    "set in a concrete scenario, with names, numbers and circumstances",
    "mixing the first example's topic with the topic of one of the other examples",
    "from someone who doubts, disagrees or has a problem to solve rather than a question to ask",
];

/// The instruction for a later variant: its seed request, other seed requests for range, and a
/// direction to move in, so that variants of one seed are not paraphrases of each other.
pub fn variant_prompt(seed_request: &str, others: &[&str], direction: &str) -> String {
    let mut text = String::from("Here are examples of requests users sent to an AI assistant:\n\n");
    for example in std::iter::once(seed_request).chain(others.iter().copied()) {
        text.push_str(&format!("<example>\n{}\n</example>\n\n", example.trim()));
    }
    text.push_str(&format!(
        "Write one new request that a different user might send, in the spirit of the first example but \
         {direction}. It must not be a rewording of any example. Reply with the new request only, without \
         any preamble, quotes or answer."
    ));
    text
}

/// The instruction for a follow-up user turn: the conversation so far, and the seed's own
/// follow-up as an example of style.
pub fn follow_up_prompt(system: Option<&str>, turns: &[(String, String)], example: &str) -> String {
    let mut text =
        String::from("Here is a conversation between a user and an AI assistant so far:\n\n<conversation>\n");
    if let Some(system) = system {
        text.push_str(&format!("System: {}\n", system.trim()));
    }
    for (user, answer) in turns {
        text.push_str(&format!("User: {}\nAssistant: {}\n", user.trim(), answer.trim()));
    }
    text.push_str(&format!(
        "</conversation>\n\nWrite the user's next message in this conversation. For its style, here is how \
         another user followed up in a similar conversation:\n\n<example>\n{}\n</example>\n\n\
         Reply with the user's next message only, without any preamble, quotes or answer.",
        example.trim()
    ));
    text
}
