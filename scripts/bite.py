#!/usr/bin/env python3
"""Shows that the models bite: breaks the real code on purpose, one bug at a time, and checks
that the model meant to catch that bug fails. The source is restored after each run.

    python3 scripts/bite.py            # every mutation
    python3 scripts/bite.py fifo-lifo  # just one
    python3 scripts/bite.py --check    # only that every mutation still applies (CI)

Each mutation is an exact text replacement that must match exactly once, so a mutation that no
longer applies (the code moved on) is reported as an error rather than silently skipped.
The table printed at the end is the one in docs/verification.md.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOOM_ENV = {
    "RUSTFLAGS": "--cfg loom",
    "CARGO_TARGET_DIR": str(ROOT / "target" / "loom"),
}


def loom(model, package="gil-core"):
    return ["cargo", "test", "-q", "-p", package, "--test", "loom", "--profile", "loom",
            "--", "--exact", model]


def loom_std(model):
    return loom(model, "gil-std")


def plain(package, test, name):
    """An ordinary test (no loom): run without the loom flags."""
    return ["plain", "cargo", "test", "-q", "-p", package, "--test", test, "--", "--exact", name]


def unit(package, name):
    """A unit test inside the library (no loom)."""
    return ["plain", "cargo", "test", "-q", "-p", package, "--lib", "--", "--exact", name]


# (name, the bug in words, file, original text, broken text, command that must fail)
MUTATIONS = [
    ("enqueue-ignores-owner",
     "enqueue takes the lock whenever nobody is queued, even while another thread owns it",
     "gil-core/src/raw.rs",
     "        if state & LOCKED == 0 {\n            // Free, so nobody is queued",
     "        if state & QUEUED == 0 {\n            // Free, so nobody is queued",
     loom("mutual_exclusion_three_threads")),
    ("grant-relaxed",
     "the grant is published with Relaxed: the new owner may not see the old owner's writes",
     "gil-core/src/raw.rs",
     "            let unparker = Waiter::tell(head, GRANTED, Release);",
     "            let unparker = Waiter::tell(head, GRANTED, Relaxed);",
     loom("mutual_exclusion_three_threads")),
    ("queue-lock-relaxed",
     "the queue lock is taken with Relaxed: queue edits race",
     "gil-core/src/raw.rs",
     "let state = self.state.fetch_or(QUEUE_LOCKED, Acquire);",
     "let state = self.state.fetch_or(QUEUE_LOCKED, Relaxed);",
     loom("mutual_exclusion_three_threads")),
    ("handoff-without-wake",
     "release hands the lock to the head waiter but never wakes it",
     "gil-core/src/raw.rs",
     "                self.unlock_queue(if now_empty { state & !QUEUED } else { state });\n"
     "                wake::<P>(unparker);",
     "                self.unlock_queue(if now_empty { state & !QUEUED } else { state });\n"
     "                drop(unparker);",
     loom("fifo_no_overtaking")),
    ("asleep-missed",
     "a grant reads whether the waiter sleeps and then stores, apart: a waiter that marks itself "
     "asleep in between is never woken",
     "gil-core/src/queue.rs",
     "        (word.swap(to, order) == ASLEEP).then_some(unparker)",
     "        let was = word.load(Ordering::Relaxed);\n"
     "        word.store(to, order);\n"
     "        (was == ASLEEP).then_some(unparker)",
     loom("fifo_no_overtaking")),
    ("loan-end-offered",
     "a borrower going away offers the lock to the lender instead of giving it back",
     "gil-core/src/raw.rs",
     "        let Some(head) = head.filter(|_| !lender) else {",
     "        let Some(head) = head.filter(|_| !lender || true) else {",
     plain("gil-core", "protocol", "a_loan_comes_back_to_the_lender_at_the_borrowers_region")),
    ("loan-end-without-wake",
     "the release to the head waiter never wakes it, here met by a borrower going away, whose loan ends with that release (the same edit as handoff-without-wake)",
     "gil-core/src/raw.rs",
     "                self.unlock_queue(if now_empty { state & !QUEUED } else { state });\n"
     "                wake::<P>(unparker);",
     "                self.unlock_queue(if now_empty { state & !QUEUED } else { state });\n"
     "                drop(unparker);",
     loom("a_loan_comes_back_when_the_borrower_goes_away")),
    ("fifo-lifo",
     "the queue serves its newest waiter first",
     "gil-core/src/queue.rs",
     "        [self.lender, self.urgent.head, self.rest.head]",
     "        [self.lender, self.urgent.head, self.rest.tail]",
     loom("fifo_no_overtaking")),
    ("yielder-keeps-running",
     "a yield hands the lock to the head waiter and the yielder carries on as if it still owned it",
     "gil-core/src/raw.rs",
     "        wake::<P>(unparker);\n        true\n    }",
     "        wake::<P>(unparker);\n        false\n    }",
     loom("drop_request_hands_off_and_yielder_waits_its_turn")),
    ("cancel-loses-grant",
     "a cancel that finds its waiter already granted reports it removed: the lock is lost",
     "gil-core/src/raw.rs",
     "            GRANTED => (Cancel::Granted, state),",
     "            GRANTED => (Cancel::Removed, state),",
     loom("cancel_racing_with_grant")),
    ("close-forgets-waiters",
     "close marks the lock closed but leaves the waiters asleep in the queue",
     "gil-core/src/raw.rs",
     "            let fresh = self\n                .queue\n"
     "                .with_mut(|q| unsafe { (*q).find(|w| !w.is_returning()) });",
     "            let fresh: Option<*const Waiter<P>> = None;",
     loom("close_while_waiting")),
    ("lend-lender-at-tail",
     "a lend queues the lender at the tail: it loses its place to the waiters behind",
     "gil-core/src/raw.rs",
     "                (*q).push_lender(&*waiter);",
     "                (*q).push_back(&*waiter);",
     loom("lend_goes_to_the_urgent_waiter_and_comes_back_first")),
    ("urgent-at-tail",
     "an urgent waiter is queued at the tail like any other",
     "gil-core/src/raw.rs",
     "                (*q).push_urgent(&*waiter);",
     "                (*q).push_back(&*waiter);",
     loom("lend_goes_to_the_urgent_waiter_and_comes_back_first")),
    # the loan asked for on the breaker (gil-core)
    ("loan-grant-relaxed",
     "a loan is granted with Relaxed: the borrower may not see the lender's writes",
     "gil-core/src/breaker.rs",
     "            match self.0.compare_exchange(seen, lent, Release, Relaxed) {",
     "            match self.0.compare_exchange(seen, lent, Relaxed, Relaxed) {",
     loom("a_loan_asked_for_is_lent_and_comes_back")),
    ("loan-give-back-relaxed",
     "a loan is given back with Relaxed: the lender may not see the borrower's writes",
     "gil-core/src/breaker.rs",
     "            .fetch_and(!(Self::LOAN_OUT | Self::LENDER_ASLEEP), Release);",
     "            .fetch_and(!(Self::LOAN_OUT | Self::LENDER_ASLEEP), Relaxed);",
     loom("a_loan_asked_for_is_lent_and_comes_back")),
    ("lender-sleeps-unmarked",
     "the lender goes to sleep without marking the breaker word: the give-back never wakes it",
     "gil-core/src/breaker.rs",
     "            if seen & Self::LENDER_ASLEEP != 0 {\n                return Some(seen);",
     "            if true {\n                return Some(seen);",
     loom("a_loan_asked_for_is_lent_and_comes_back")),
    ("withdraw-ignores-grant",
     "withdrawing an ask reports it withdrawn even when the loan was granted first",
     "gil-core/src/breaker.rs",
     "        old & Self::LOAN_ASKED != 0\n    }",
     "        true\n    }",
     loom("a_loan_asked_for_is_lent_and_comes_back")),
    ("withdraw-claims-loan",
     "withdrawing an ask that stood reports the loan granted: the asker uses a lock nobody lent",
     "gil-core/src/breaker.rs",
     "        old & Self::LOAN_ASKED != 0\n    }",
     "        old & Self::LOAN_ASKED == 0\n    }",
     loom("an_ask_for_a_loan_is_withdrawn_when_the_lock_is_let_go")),
    ("ask-during-loan",
     "an ask succeeds while a loan is out: two loans at once",
     "gil-core/src/breaker.rs",
     "            if seen & (Self::LOAN_ASKED | Self::LOAN_OUT) != 0 {\n                return false;",
     "            if seen & Self::LOAN_ASKED != 0 {\n                return false;",
     plain("gil-test", "model", "a_loan_asked_for_matches_the_model")),
    ("grant-keeps-ask",
     "a grant leaves the ask standing: the breaker still says a loan is asked for",
     "gil-core/src/breaker.rs",
     "            let lent = (seen & !Self::LOAN_ASKED) | Self::LOAN_OUT;",
     "            let lent = seen | Self::LOAN_OUT;",
     plain("gil-test", "model", "the_core_matches_the_reference_model")),
    ("borrower-keeps-drop-request",
     "a borrower asked to drop yields in line instead of giving the loan back first",
     "gil-core/src/raw.rs",
     "            if self.is_lent() {",
     "            if false {",
     loom("a_borrower_asked_to_drop_gives_the_loan_back_first")),
    # gil-std
    ("loan-released-by-unlock",
     "a thread on a loan it asked for lets go with unlock instead of giving the loan back",
     "gil-std/src/gil.rs",
     "        if self.end_hold() {\n            self.give_back_loan();",
     "        if self.end_hold() && false {\n            self.give_back_loan();",
     loom_std("a_thread_back_from_a_region_borrows_the_lock")),
    ("loan-holder-unknown",
     "a thread on a loan it asked for is not told it holds the lock (the owner token is the "
     "lender's): its ensure() would wait for itself",
     "gil-std/src/gil.rs",
     "            || crate::credit::on_loan(self) == Some(Lent::Asked)",
     "            || false",
     plain("gil-std", "fast_return", "a_thread_back_from_blocking_borrows_the_lock_from_a_busy_holder")),
    ("region-skips-take-back",
     "leaving a blocking region does not wait for the lock when another thread holds it",
     "gil-std/src/guard.rs",
     "        let back = self.wait_for_grant(node, None, asked);\n"
     "        debug_assert!(back.is_ok(), \"returning waiters are never closed\");",
     "",
     loom_std("blocking_region_round_trip")),
    ("nested-ensure-releases",
     "a nested ensure guard does not count in the hold, so dropping it releases the outer "
     "holder's lock",
     "gil-std/src/gil.rs",
     "            self.join_hold();\n            EnsureGuard::nested(self)",
     "            EnsureGuard::nested(self)",
     loom_std("ensure_nesting")),
    ("region-return-is-fresh",
     "leaving a blocking region queues as a fresh acquirer, which close turns away",
     "gil-std/src/guard.rs",
     "            Node::returning()\n        };",
     "            Node::new()\n        };",
     loom_std("close_while_waiting")),
    ("try-acquire-gives-up-on-editor",
     "try_acquire reports WouldBlock while another thread edits the queue of a free lock",
     "gil-core/src/raw.rs",
     "            if state & (LOCKED | QUEUED) != 0 {",
     "            if state | (LOCKED | QUEUED) != 0 {",
     loom("try_acquire_on_a_free_lock_never_spuriously_fails")),
    ("queue-lock-wait-inverted",
     "a thread waiting for the queue lock waits while it is free instead of while it is held",
     "gil-core/src/raw.rs",
     "            while self.state.load(Relaxed) & QUEUE_LOCKED != 0 {",
     "            while self.state.load(Relaxed) & QUEUE_LOCKED == 0 {",
     loom("mutual_exclusion_three_threads")),
    ("region-skips-take-back@user",
     "leaving a blocking region does not wait for the lock (seen by a user's own loom test)",
     "gil-std/src/guard.rs",
     "        let back = self.wait_for_grant(node, None, asked);\n"
     "        debug_assert!(back.is_ok(), \"returning waiters are never closed\");",
     "",
     ["cargo", "test", "-q", "-p", "gil-test", "--test", "loom_user", "--profile", "loom"]),
    ("clock-keeps-dropped-lock",
     "the last waiter out does not unlist the lock from the clock, which may outlive it",
     "gil-std/src/gil.rs",
     "        if self.timed {\n            clock().leave(gil);\n        }",
     "",
     plain("gil-std", "preemption", "contended_locks_can_be_dropped_right_away")),
    # gil-std services
    ("interrupt-not-rearmed",
     "a thread taking the lock does not look at its own interrupt flag, so an interrupt whose "
     "breaker bit another holder cleared is lost",
     "gil-std/src/interrupt.rs",
     "        if is_own_pending() {\n            self.raw.breaker().set(INTERRUPT);",
     "        if false {\n            self.raw.breaker().set(INTERRUPT);",
     loom_std("an_interrupt_is_reported_exactly_once")),
    ("interrupt-not-rearmed@threads",
     "as interrupt-not-rearmed, seen with real threads",
     "gil-std/src/interrupt.rs",
     "        if is_own_pending() {\n            self.raw.breaker().set(INTERRUPT);",
     "        if false {\n            self.raw.breaker().set(INTERRUPT);",
     plain("gil-std", "services",
           "an_interrupt_made_while_a_thread_is_away_is_reported_after_it_takes_the_lock")),
    ("interrupt-reported-twice",
     "a checkpoint reports the interrupt without clearing the thread's flag",
     "gil-std/src/interrupt.rs",
     "slot.pending.swap(false, AcqRel)",
     "slot.pending.load(Acquire)",
     loom_std("an_interrupt_is_reported_exactly_once")),
    ("region-misses-early-interrupt",
     "a region does not look for an interrupt made before its unblock function was registered",
     "gil-std/src/interrupt.rs",
     "        if pending {\n            unblock();\n        }",
     "",
     loom_std("an_interrupt_always_unblocks_a_region")),
    ("close-drops-calls",
     "close empties the pending-call queue instead of handing the calls back",
     "gil-std/src/calls.rs",
     "        PendingCalls(std::mem::take(&mut calls.queue))",
     "        calls.queue.clear();\n        PendingCalls(VecDeque::new())",
     loom_std("pending_calls_are_neither_lost_nor_run_twice")),
    ("call-not-announced",
     "queuing a call into an empty queue sets neither flag, so nobody runs it",
     "gil-std/src/calls.rs",
     "        if calls.queue.len() == 1 {",
     "        if calls.queue.is_empty() {",
     plain("gil-std", "services",
           "the_next_thread_to_acquire_runs_calls_queued_while_nobody_held")),
    ("calls-flag-cleared-outside-lock",
     "the runner clears the flags after letting go of the queue's mutex, so a call added in "
     "between is queued with nobody told",
     "gil-std/src/calls.rs",
     "                    None => {\n                        if calls.queue.is_empty() {",
     "                    None => {\n                        drop(calls);\n"
     "                        if lock(&self.calls).queue.is_empty() {",
     loom_std("pending_calls_are_never_stranded")),
    ("handler-bit-not-taken",
     "the checkpoint runs a runtime bit's handler without taking the bit, so it runs again",
     "gil-std/src/handlers.rs",
     "            if self.raw.breaker().take(bit) == 0 {",
     "            if self.raw.breaker().pending() & bit == 0 {",
     plain("gil-std", "services", "runtime_bits_run_their_handler_at_the_holders_checkpoint")),
    ("close-strands-offer",
     "close takes out the waiter the lock was offered to and offers it to nobody else, while "
     "the owner is away",
     "gil-core/src/raw.rs",
     "                    Some(head) if was_offered => Waiter::tell(head, OFFERED, Relaxed),",
     "                    Some(head) if was_offered && false => Waiter::tell(head, OFFERED, Relaxed),",
     loom("an_offer_survives_cancel_and_close")),
    ("reclaim-ignores-claim",
     "the owner back from its region takes the lock back whenever some owner is away, even if "
     "its offer was claimed and the claimer went away in turn",
     "gil-core/src/raw.rs",
     "        if state & AWAY == 0 || self.absences.load(Relaxed) != absence {",
     "        if state & AWAY == 0 {",
     plain("gil-core", "protocol", "an_away_owner_offers_the_head_and_can_come_back_first")),
    ("absences-not-numbered",
     "every offer gets the same absence number, so an owner whose absence ended (its offer "
     "claimed, or closed out) reclaims a later owner's absence as its own",
     "gil-core/src/raw.rs",
     "        let absence = self.absences.load(Relaxed).wrapping_add(1);",
     "        let absence = self.absences.load(Relaxed);",
     plain("gil-test", "model", "a_reclaim_after_close_matches_the_model")),
    ("urgent-ignores-offer",
     "an urgent waiter that queues ahead of the offered head while the owner is away does not "
     "take the offer over: the lock waits for the head behind it",
     "gil-core/src/raw.rs",
     "                if state & AWAY != 0 && (*q).head() == Some(&*waiter as *const _) {",
     "                if false && (*q).head() == Some(&*waiter as *const _) {",
     plain("gil-test", "model", "the_core_matches_the_reference_model")),
    ("claim-ignores-reclaim",
     "a waiter that saw the offer takes the lock without looking again under the queue lock, "
     "though the owner may have come back",
     "gil-core/src/raw.rs",
     "            _ => (WaitState::Waiting, state),",
     "            _ => (WaitState::Granted, unsafe { self.take_offer(waiter, state) }),",
     loom("an_away_owner_and_its_waiters_exclude_each_other")),
    ("loan-never-timed",
     "the two sides of a loan never arm the clock, so a borrower that does not block again "
     "keeps the lock from its lender for ever",
     "gil-std/src/gil.rs",
     "        clock().arm(self.gil, start);\n        self.timed = true;\n        false",
     "        false",
     plain("gil-std", "fast_return", "a_queued_loan_that_does_not_end_ends_with_the_lenders_slice")),
    ("asked-loan-never-timed",
     "a lender that lent the lock it was asked for sleeps without arming the clock, so a "
     "borrower that does not block again keeps the lock from it for ever",
     "gil-std/src/gil.rs",
     "        clock().arm(self.gil, start);\n        self.timed = true;\n        false",
     "        false",
     plain("gil-std", "fast_return", "a_loan_that_does_not_end_ends_with_the_lenders_slice")),
    ("holder-never-times",
     "the lock is listed without SLICE_TIMER: the holder never times its own slice, and only "
     "the clock's drop requests end it",
     "gil-std/src/clock.rs",
     "                gil.raw.breaker().set(SLICE_TIMER);",
     "",
     unit("gil-std", "clock::tests::the_holder_ends_its_own_slice_with_the_clock_silent")),
    ("slice-never-waits",
     "the holder's look ends its slice as soon as anybody waits, not a switch interval later",
     "gil-std/src/clock.rs",
     "        now_nanos() >= since.saturating_add(self.interval_nanos())",
     "        now_nanos() >= since",
     unit("gil-std", "clock::tests::the_holder_keeps_its_slice_until_it_is_over")),
    ("armed-after-handoff",
     "a thread handing over arms the clock only after it queued (and woke the next holder), so "
     "the lock can be unlisted while the new holder starts its slice",
     "gil-std/src/gil.rs",
     "        let timed = CLOCK && turn == Turn::InLine;",
     "        let timed = false;",
     unit("gil-std", "clock::tests::a_thread_handing_over_is_counted_in_before_it_lets_go")),
    ("credit-uncapped",
     "credit is not capped: a thread that blocked long saves up for a long run of loans",
     "gil-std/src/credit.rs",
     "            .min(Self::cap(interval));",
     "            ;",
     unit("gil-std", "credit::tests::out_of_turn_holding_stays_within_the_fair_share")),
    ("credit-unshared",
     "a thread earns all of the time it blocked, not its share among the contending threads",
     "gil-std/src/credit.rs",
     "        let earned = blocked / contending.max(1);",
     "        let earned = blocked;",
     unit("gil-std", "credit::tests::out_of_turn_holding_stays_within_the_fair_share")),
    ("loans-free",
     "time held out of turn is not charged to the borrower's credit",
     "gil-std/src/credit.rs",
     "            .saturating_sub(i64::try_from(held).unwrap_or(i64::MAX))",
     "            .saturating_sub(0)",
     unit("gil-std", "credit::tests::out_of_turn_holding_stays_within_the_fair_share")),
    ("sole-by-head",
     "the queue takes out its head as if it were alone (without reading its links), losing "
     "everyone behind it",
     "gil-core/src/queue.rs",
     "        if w == self.head && w == self.tail {",
     "        if w == self.head {",
     loom("fifo_no_overtaking")),
    ("urgent-over-lender",
     "the head counts as urgent while a lender waits ahead of the urgent waiters, so a "
     "borrower lends on and the lender is pushed back in line",
     "gil-core/src/queue.rs",
     "        self.lender.is_null() && !self.urgent.is_empty()",
     "        !self.urgent.is_empty()",
     plain("gil-test", "model", "an_urgent_waiter_queues_behind_the_lender")),
    ("lender-kept",
     "the queue forgets to clear its lender when the lender is taken out, so a later waiter "
     "at the same address is given back a loan it never made",
     "gil-core/src/queue.rs",
     "        if w == self.lender {\n            self.lender = ptr::null();\n",
     "        if w == self.lender {\n",
     plain("gil-core", "protocol", "a_lender_is_forgotten_once_its_loan_is_over")),
    # The safe API's checks (gil-std/tests/soundness.rs).
    ("hold-ends-with-first-guard",
     "a guard's drop releases the lock whatever other guards of the hold still live",
     "gil-std/src/gil.rs",
     "        if nested != 0 {\n            return self.drop_nested(nested);",
     "        if false {\n            return self.drop_nested(nested);",
     plain("gil-std", "soundness", "a_nested_guard_keeps_the_hold_it_nests_in")),
    ("guards-not-set-aside",
     "a hand-over from under nested guards leaves their count to the next holder",
     "gil-std/src/gil.rs",
     "        if nested != 0 {\n            self.nested.store(0, Relaxed);",
     "        if false {\n            self.nested.store(0, Relaxed);",
     plain("gil-std", "soundness", "a_hand_over_under_nested_guards_starts_the_next_hold_afresh")),
    ("guards-not-restored",
     "the nested guards' count is not restored once the lock is back from a hand-over, so the "
     "outer guard's drop releases under a live nested guard",
     "gil-std/src/gil.rs",
     "        if nested != 0 {\n            self.nested.store(nested, Relaxed);",
     "        if false {\n            self.nested.store(nested, Relaxed);",
     plain("gil-test", "torture", "torture")),
    ("region-under-nested-guards",
     "a blocking region opens while nested guards of the hold live",
     "gil-std/src/gil.rs",
     "        if self.nested.load(Relaxed) != 0 {\n            region_with_guards_panic();",
     "        if false {\n            region_with_guards_panic();",
     plain("gil-std", "soundness", "a_region_refuses_to_open_under_a_nested_guard")),
    ("relock-while-holding",
     "relock waits for the lock on a thread that holds it again: a silent self-deadlock",
     "gil-std/src/guard.rs",
     "        if gil.holds_here() {",
     "        if false {",
     plain("gil-std", "soundness", "relocking_while_holding_again_panics")),
    ("region-ends-holding",
     "a closure region that returns a guard of its lock waits for itself to take it back",
     "gil-std/src/guard.rs",
     "        if this.gil.holds_here() {",
     "        if false {",
     plain("gil-std", "soundness", "a_region_that_returns_a_guard_of_its_own_lock_panics")),
    ("calls-before-the-guard",
     "a fresh hold runs its pending calls before its guard exists, so a call that panics "
     "leaks the lock",
     "gil-std/src/gil.rs",
     "        let guard = GilGuard::new(self);\n        self.watch_hold(watch);\n"
     "        if watch & WATCH_CALLS != 0 && !std::thread::panicking() {\n"
     "            self.run_pending_calls(&guard);\n        }\n        guard",
     "        self.watch_hold(watch);\n"
     "        if watch & WATCH_CALLS != 0 && !std::thread::panicking() {\n"
     "            self.run_pending_calls(&GilGuard::borrowed(self));\n        }\n"
     "        GilGuard::new(self)",
     plain("gil-std", "soundness", "a_panicking_pending_call_unwinds_through_the_guard_of_acquire")),
    ("calls-unbounded",
     "a checkpoint runs pending calls until the queue is empty, also those queued meanwhile",
     "gil-std/src/calls.rs",
     "                let left = budget.get_or_insert(calls.queue.len());",
     "                let left = budget.get_or_insert(usize::MAX);",
     plain("gil-std", "soundness", "a_call_that_queues_itself_again_runs_once_per_checkpoint")),
    ("clock-reasks",
     "the clock asks again for a drop still pending, every interval",
     "gil-std/src/clock.rs",
     "                if gil.raw.breaker().pending() & Breaker::DROP_REQUEST == 0 {",
     "                if true {",
     plain("gil-std", "soundness", "the_clock_asks_once_while_its_request_is_unanswered")),
    ("clock-runs-hooks",
     "the clock thread makes its drop requests through Gil::request_drop, which runs the hook "
     "under the clock's mutex",
     "gil-std/src/clock.rs",
     "                    gil.raw.request_drop();",
     "                    gil.request_drop();",
     plain("gil-std", "soundness", "a_hook_that_changes_the_interval_on_a_drop_request_hangs_nothing")),
    ("timed-wait-by-the-clock",
     "a waiter with a deadline sleeps untimed and waits for the clock thread to wake it",
     "gil-std/src/sync.rs",
     "    #[cfg(all(target_os = \"linux\", not(loom)))]\n    crate::park::park_until(node.word(), at);\n"
     "    #[cfg(all(not(target_os = \"linux\"), not(loom)))]",
     "    #[cfg(any())]\n    crate::park::park_until(node.word(), at);\n    #[cfg(not(loom))]",
     unit("gil-std", "clock::tests::a_timed_waiter_wakes_itself")),
    ("unblock-calls-unmerged",
     "an interrupt made while the unblock function runs calls it again, from inside itself",
     "gil-std/src/interrupt.rs",
     "                Some(f) if registered.calling == 0 => {",
     "                Some(f) => {",
     plain("gil-std", "soundness", "an_unblock_function_may_interrupt_its_own_thread")),
    ("hooks-may-take-guards",
     "an event hook may take, drop or use a guard of the lock it reports on",
     "gil-std/src/gil.rs",
     "        if self.watch.load(Relaxed) & WATCH_HOOK != 0 && crate::owner::is_in_hook(self) {\n            in_hook_panic();",
     "        if false {\n            in_hook_panic();",
     plain("gil-std", "soundness", "a_hook_cannot_take_the_lock_it_reports_on")),
]


def run(name, bug, path, original, broken, cmd):
    file = ROOT / path
    text = file.read_text()
    count = text.count(original)
    if count != 1:
        return name, bug, cmd[-1], f"ERROR: the original text occurs {count} times", 0.0
    file.write_text(text.replace(original, broken))
    start = time.monotonic()
    try:
        if cmd[0] == "plain":
            cmd, env = cmd[1:], dict(os.environ)
        else:
            env = dict(os.environ, **LOOM_ENV)
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    finally:
        file.write_text(text)
    elapsed = time.monotonic() - start
    if out.returncode == 0:
        verdict = "SURVIVED (the model did not catch it)"
    elif "error[E" in out.stderr or "could not compile" in out.stderr:
        verdict = "ERROR: the mutation does not compile"
    else:
        lines = out.stdout.splitlines() + out.stderr.splitlines()
        # The panic message is the line after "panicked at"; loom repeats it, take the first.
        msgs = [lines[i + 1] for i, l in enumerate(lines[:-1]) if "panicked at" in l]
        verdict = "caught: " + (msgs[0].strip() if msgs else "failed")
    return name, bug, cmd[-1], verdict[:160], elapsed


# The core's waiting composites, which gil-std runs: each mutation is caught by a gil-core
# model and, in the `@std` row, by a gil-std check.
COMPOSITES = [
    ("give-up-loses-grant",
     "a wait that gives up while the lock is being granted to it reports a timeout: the grant "
     "is lost and the lock stays locked",
     "gil-core/src/raw.rs",
     "                    Cancel::Granted => Waited::Granted,\n                    Cancel::Closed => Waited::Closed,",
     "                    Cancel::Granted => Waited::GaveUp,\n                    Cancel::Closed => Waited::Closed,",
     loom("a_wait_that_gives_up_never_loses_a_grant"),
     loom_std("timeout_vs_grant")),
    ("yield-without-waiting",
     "a yield hands the lock on and returns at once, without waiting to get it back",
     "gil-core/src/raw.rs",
     "        policy.queued();\n        // SAFETY: queued by `step_aside`, by this thread.\n        let back = unsafe { self.wait_with(waiter, policy) };",
     "        policy.queued();\n        let back = Waited::Granted;",
     loom("drop_request_hands_off_and_yielder_waits_its_turn"),
     plain("gil-std", "gil", "a_drop_request_makes_a_busy_holder_hand_over")),
    ("lender-does-not-wait",
     "a lender goes on at once, while the borrower holds the lock it lent",
     "gil-core/src/raw.rs",
     "        while self.breaker.loan_out() {\n            if spinning && policy.spin() {",
     "        while false && self.breaker.loan_out() {\n            if spinning && policy.spin() {",
     loom("a_loan_asked_for_is_lent_and_comes_back"),
     loom_std("a_thread_back_from_a_region_borrows_the_lock")),
    ("borrow-keeps-its-ask",
     "a borrower that stops waiting for its loan does not withdraw the ask: the holder later "
     "lends to a thread that took the lock another way",
     "gil-core/src/raw.rs",
     "        self.loan() == Loan::Lent || !unsafe { self.withdraw_loan() }",
     "        self.loan() == Loan::Lent",
     loom("a_loan_asked_for_is_lent_and_comes_back"),
     loom_std("a_thread_back_from_a_region_borrows_the_lock")),
]
for (name, bug, path, original, broken, core_check, std_check) in COMPOSITES:
    MUTATIONS.append((name, bug, path, original, broken, core_check))
    MUTATIONS.append((f"{name}@std", bug, path, original, broken, std_check))

# The property test against the reference model must catch these core bugs too.
MODEL = plain("gil-test", "model", "the_core_matches_the_reference_model")
MUTATIONS += [
    (f"{name}@model", bug, path, original, broken, MODEL)
    for (name, bug, path, original, broken, _) in list(MUTATIONS)
    if name in ("enqueue-ignores-owner", "fifo-lifo", "yielder-keeps-running",
                "cancel-loses-grant", "close-forgets-waiters", "urgent-at-tail")
]
MUTATIONS += [
    ("switch-not-counted@model",
     "a handoff does not count as a switch (the clock would preempt a thread that just got in)",
     "gil-core/src/raw.rs",
     "            self.switches\n                .store(self.switches.load(Relaxed).wrapping_add(1), Relaxed);",
     "",
     MODEL),
    ("lend-lender-at-tail@model",
     "a lend queues the lender at the tail: it loses its place to the waiters behind",
     "gil-core/src/raw.rs",
     "                (*q).push_lender(&*waiter);",
     "                (*q).push_back(&*waiter);",
     plain("gil-test", "model", "a_lender_comes_back_before_the_waiters_behind")),
    ("close-takes-returning@model",
     "close also fails returning waiters, so a holder coming back from a region is shut out",
     "gil-core/src/raw.rs",
     ".find(|w| !w.is_returning())",
     ".find(|_| true)",
     MODEL),
]


def check_anchors():
    """`--check`: only that every mutation still applies (its original text occurs exactly once),
    without building or running anything. CI runs it, so that a change to the code that moves a
    mutation's text away is seen at once, not at the next full run of this script."""
    stale = [(name, path, (ROOT / path).read_text().count(original))
             for (name, _, path, original, _, _) in MUTATIONS]
    stale = [s for s in stale if s[2] != 1]
    for name, path, count in stale:
        print(f"stale mutation {name}: its original text occurs {count} times in {path}",
              file=sys.stderr)
    if stale:
        sys.exit(1)
    print(f"all {len(MUTATIONS)} mutations apply")


def main():
    if sys.argv[1:] == ["--check"]:
        return check_anchors()
    wanted = set(sys.argv[1:])
    rows = [run(*m) for m in MUTATIONS if not wanted or m[0] in wanted]
    bad = 0
    print("| mutation | the bug | model | result | seconds |")
    print("|---|---|---|---|---|")
    for name, bug, model, verdict, secs in rows:
        bad += not verdict.startswith("caught")
        print(f"| `{name}` | {bug} | `{model}` | {verdict} | {secs:.0f} |")
    if bad:
        print(f"{bad} mutation(s) not caught", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
