"""Question/answer recognition and grouping in hashtag chats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.qa import (
    QAPost,
    answer_number,
    group,
    question_number,
    question_posts,
    thread_answer,
)

# (text, expected question number or None) — phrasings seen in real chats, and look-alikes.
QUESTIONS = [
    ("Q1: What are you growing right now? #plantchat", 1),
    ("Q2. What's your biggest small-space challenge?", 2),
    ("Q3 - Watering while you're away: what's your trick?", 3),
    ("Q4 – How do you bring other people in?", 4),
    ("Q4) How do you bring other people in?", 4),
    ("Q5/ Best tool under $20?", 5),
    ("Q 6 What would you tell a beginner?", 6),
    ("Q7 What's next for your garden?", 7),
    ("q2: lower case works too", 2),
    ("Question 3: What did you learn this year?", 3),
    ("Question #8 - last one!", 8),
    ("📣 Q1: Welcome! What brings you here?", 1),
    ("➡️ Q9: Any final thoughts?", 9),
    ("@maya@garden.example Q2: reposting for the late crowd", 2),
    ("#plantchat Q10: bonus question", 10),
    ("Q0: Introduce yourself!", 0),
    ("Q1a: First part of the question", 1),
    ("**Q3:** bold in markdown", 3),
    ("[Q4] bracketed", 4),
    ("Q12 #plantchat", 12),
    ("Q5", 5),
    ("QA session starts at noon", None),
    ("Q&A at 5pm!", None),
    ("Q10k training plan", None),
    ("Quick intros first: who are you?", None),
    ("Our Q1 2024 results are in", None),
    ("Q1 2024 results are in", None),
    ("Q4's numbers look strong", None),
    ("Q1-Q2 roadmap", None),
    ("Q3.5 release notes", None),
    ("Qatar is lovely in winter", None),
    ("#Q1 earnings call", None),
    ("Question 2 was the hardest", None),
    ("Q100: too many questions", None),
    ("", None),
]

# (text, expected answer number or None).
ANSWERS = [
    ("A1: Basil, thyme, rosemary and chives", 1),
    ("A1 Scotch bonnets in paint buckets", 1),
    ("A1. Radishes, fast wins", 1),
    ("A1 - kale and chard", 1),
    ("A1 — kale and chard", 1),
    ("a1) lower case with a paren", 1),
    ("A 1: spaced with a colon", 1),
    ("A 2. spaced with a period", 2),
    ("A 3 - spaced with a dash", 3),
    ("A 4) spaced with a paren", 4),
    ("A 5/ spaced with a slash", 5),
    ("Answer 1: the long form", 1),
    ("answer 2 - long form with a dash", 2),
    ("Ans 3: abbreviated", 3),
    ("@maya A2: Slugs. So many slugs.", 2),
    ("@maya@garden.example @zoe A3: wicking beds", 3),
    ("@maya.bsky.social A4 seed library", 4),
    ("@maya, A2 heat and wind", 2),
    ("A1a: first part of my answer", 1),
    ("A1b) second part", 1),
    ("A1/ and A2/ both: compost", 1),
    ("A1, definitely coffee", 1),
    ("💡A1: light", 1),
    ("🌱 A3 ollas!", 3),
    ("A3 A kind neighbour, honestly.", 3),
    ("A1 steak sauce, obviously", 1),
    ("A0: Hi, I'm Zoë from Lyon", 0),
    ("A12: late but here", 12),
    ("A7", 7),
    ("A 10-minute walk to the allotment", None),
    ("A 2.5 hour drive each way", None),
    ("A 2:30 start suits me", None),
    ("A 5/10 experience", None),
    ("A 1 without a delimiter is just prose", None),
    ("A1c was 6.8 this quarter", None),
    ("A10-minute read", None),
    ("A fig on a balcony! How big is the pot?", None),
    ("A cheap battery one.", None),
    ("Anyone else watering at night?", None),
    ("A/B testing our seed mixes", None),
    ("A+ answer", None),
    ("a lot of slugs", None),
    ("Answer 2 was my favourite", None),
    ("As a first-timer: hello!", None),
    ("AA batteries for the timer", None),
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), QUESTIONS)
def test_question_number_table(text: str, expected: int | None) -> None:
    """Each real-world question phrasing yields its number; look-alikes yield None."""
    assert question_number(text) == expected


@pytest.mark.parametrize(("text", "expected"), ANSWERS)
def test_answer_number_table(text: str, expected: int | None) -> None:
    """Each real-world answer phrasing yields its number; look-alikes yield None."""
    assert answer_number(text) == expected


def test_tables_are_large_and_balanced() -> None:
    """The phrasing tables hold at least 40 rows with both positives and negatives."""
    assert len(QUESTIONS) + len(ANSWERS) >= 80
    for table in (QUESTIONS, ANSWERS):
        assert sum(expected is None for _, expected in table) >= 10
        assert sum(expected is not None for _, expected in table) >= 15


def test_answers_are_not_questions_and_back() -> None:
    """Question markers never read as answers and answer markers never read as questions."""
    for text, expected in QUESTIONS:
        if expected is not None:
            assert answer_number(text) is None, text
    for text, expected in ANSWERS:
        if expected is not None:
            assert question_number(text) is None, text


T0 = datetime(2026, 12, 1, 19, 0, tzinfo=UTC)


def post(
    id: int,
    text: str,
    *,
    reply_to: int | None = None,
    host: bool = False,
    minute: float | None = None,
) -> QAPost:
    """A post ``minute`` minutes into the chat (default: its id)."""
    at = T0 + timedelta(minutes=id if minute is None else minute)
    return QAPost(id=id, text=text, in_reply_to_id=reply_to, is_host=host, created_at=at)


def test_thread_answer_rules() -> None:
    """A plain reply to a question answers it; explicit markers win; hosts and replies to
    replies do not count."""
    questions = {10: 1, 20: 2}
    assert thread_answer(post(11, "Shiso and mini tomatoes", reply_to=10), questions) == 1
    assert thread_answer(post(12, "A2: light", reply_to=10), questions) == 2
    assert thread_answer(post(13, "A2: light"), questions) == 2
    assert thread_answer(post(14, "Great question!", reply_to=10, host=True), questions) is None
    assert thread_answer(post(15, "Love that", reply_to=11), questions) is None
    assert thread_answer(post(16, "No reply, no marker"), questions) is None
    assert thread_answer(post(17, "Q3: my own question?", reply_to=10), questions) is None


def sample_chat() -> list[QAPost]:
    """A short chat: host asks Q1 and Q2 (Q2 threaded under Q1), participants answer."""
    return [
        post(1, "Welcome everyone! Quick intros first.", host=True),
        post(2, "Hi all, Zoë from Lyon", reply_to=1),
        post(3, "Q1: What are you growing right now?", host=True),
        post(4, "A1: Basil and chives", reply_to=3),
        post(5, "Shiso, mini tomatoes and edamame", reply_to=3),  # no prefix: threaded
        post(6, "@maya A1 peppers in buckets"),
        post(7, "Paint buckets are a great tip!", reply_to=6),  # reply to a reply: chat
        post(8, "Q1: I'm not the host but here's a Q1"),  # participant, not a question
        post(9, "Q2. Biggest challenge?", reply_to=3, host=True),  # threaded under Q1
        post(10, "A2: Slugs.", reply_to=9),
        post(11, "Wind, on the third floor", reply_to=9),
        post(12, "A1 (late) radishes"),
        post(13, "Good answers all round", reply_to=10, host=True),
        post(14, "A3: jumping ahead, wicking beds"),  # Q3 never asked (yet)
    ]


def test_group_collects_answers_and_threaded_replies() -> None:
    """Answers group under their question, including unprefixed replies to the question."""
    groups = group(sample_chat())
    assert [g.number for g in groups] == [1, 2, 3]
    q1, q2, q3 = groups
    assert q1.question is not None and q1.question.id == 3
    assert [a.id for a in q1.answers] == [4, 5, 6, 12]
    assert q1.count == 4
    assert q2.question is not None and q2.question.id == 9
    assert [a.id for a in q2.answers] == [10, 11]
    assert q3.question is None and [a.id for a in q3.answers] == [14] and q3.count == 1


def test_group_only_hosts_ask_when_hosts_known() -> None:
    """With a host flagged, a participant's "Q1:" is neither a question nor an answer."""
    groups = group(sample_chat())
    all_ids = {a.id for g in groups for a in g.answers} | {
        g.question.id for g in groups if g.question
    }
    assert 8 not in all_ids
    assert question_posts(sample_chat()) == {3: 1, 9: 2}


def test_group_any_author_asks_when_no_host_known() -> None:
    """With no host flags at all, any post opening with a question marker is a question."""
    posts = [
        post(1, "Q1: Favourite herb?"),
        post(2, "Mint", reply_to=1),
        post(3, "Q2: Favourite pot?"),
        post(4, "A2 terracotta"),
    ]
    groups = group(posts)
    assert [(g.number, g.question.id if g.question else None, g.count) for g in groups] == [
        (1, 1, 1),
        (2, 3, 1),
    ]


def test_group_orders_by_number_and_answers_chronologically() -> None:
    """Groups come in number order and answers in time order, whatever the input order."""
    posts = [
        post(5, "A2: late", minute=50),
        post(1, "Q2: second", host=True, minute=20),
        post(2, "Q1: first", host=True, minute=10),
        post(3, "A2: early", minute=21),
        post(4, "A1: only", minute=11),
    ]
    groups = group(reversed(posts))
    assert [g.number for g in groups] == [1, 2]
    assert [a.id for a in groups[1].answers] == [3, 5]


def test_current_is_latest_question_without_pins() -> None:
    """Without pins, the most recently posted question is current."""
    groups = group(sample_chat())
    assert [g.number for g in groups if g.current] == [2]


def test_current_follows_most_recent_pin() -> None:
    """The last pinned question post makes its group current; non-question pins are skipped."""
    groups = group(sample_chat(), pinned_question_ids=[9, 3, 6])
    assert [g.number for g in groups if g.current] == [1]
    groups = group(sample_chat(), pinned_question_ids=[3, 9])
    assert [g.number for g in groups if g.current] == [2]


def test_no_questions_means_nothing_current() -> None:
    """Answers without any question still group, and no group is current."""
    groups = group([post(1, "A1: hello"), post(2, "A1: me too")])
    assert len(groups) == 1 and groups[0].question is None and not groups[0].current
    assert group([]) == []


def test_repeated_question_keeps_first_and_collects_replies_to_both() -> None:
    """A question asked twice is headed by its first post; replies to either answer it."""
    posts = [
        post(1, "Q1: Favourite herb?", host=True),
        post(2, "Basil", reply_to=1),
        post(3, "📣 Q1: again for the late crowd: favourite herb?", host=True),
        post(4, "Thyme", reply_to=3),
    ]
    (only,) = group(posts)
    assert only.question is not None and only.question.id == 1
    assert [a.id for a in only.answers] == [2, 4]
    assert group(posts, pinned_question_ids=[3])[0].current
