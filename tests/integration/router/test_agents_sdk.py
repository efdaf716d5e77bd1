"""The OpenAI Agents SDK, as applications run it, against the router's Responses API: an agent with one
function tool runs to completion (it calls the tool, gets its result, and answers)."""

from __future__ import annotations

import asyncio

from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

from tests.support.router import RouterProcess


def test_an_agent_with_one_function_tool_runs_to_completion(router: RouterProcess) -> None:
    set_tracing_disabled(True)  # tracing would upload to OpenAI's servers
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        calls.append(city)
        return f"It is sunny and 21 degrees in {city}."

    agent = Agent(
        name="weather",
        instructions="Answer questions about the weather using the get_weather tool.",
        tools=[get_weather],
        # The first turn must call the tool; the SDK then lets the model answer freely (reset_tool_choice).
        model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=48),
        model=OpenAIResponsesModel(model="smollm2", openai_client=router.async_client()),
    )
    result = asyncio.run(Runner.run(agent, "What is the weather in Paris?", max_turns=4))
    assert len(calls) == 1 and calls[0].strip()  # the tool ran once, with a city
    assert isinstance(result.final_output, str) and result.final_output.strip()
    kinds = [item.type for item in result.new_items]
    assert kinds[:2] == ["tool_call_item", "tool_call_output_item"] and kinds[-1] == "message_output_item"
