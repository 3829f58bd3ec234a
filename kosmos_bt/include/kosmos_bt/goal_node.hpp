// Copyright 2026 The kosmos_ros Authors
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

// The action plumbing of KosmosAsk and KosmosLocate, written once: send the
// goal, follow its feedback, map its result to SUCCESS/FAILURE, and cancel it
// when the tree halts the node (the robot moved on: the answer is no longer
// computed).

#ifndef KOSMOS_BT__GOAL_NODE_HPP_
#define KOSMOS_BT__GOAL_NODE_HPP_

#include <chrono>
#include <memory>
#include <string>

#include "behaviortree_cpp/action_node.h"
#include "kosmos_bt/ros_node.hpp"
#include "rclcpp/rclcpp.hpp"
#include "rclcpp_action/rclcpp_action.hpp"

namespace kosmos_bt
{

template<class ActionT>
class GoalNode : public BT::StatefulActionNode
{
public:
  using Goal = typename ActionT::Goal;
  using Result = typename ActionT::Result;
  using Feedback = typename ActionT::Feedback;
  using GoalHandle = rclcpp_action::ClientGoalHandle<ActionT>;

  GoalNode(
    const std::string & name, const BT::NodeConfig & config,
    std::string default_action)
  : BT::StatefulActionNode(name, config), node_(nodeFrom(config)),
    spinner_(node_), default_action_(std::move(default_action)) {}

  ~GoalNode() override
  {
    if (status() == BT::NodeStatus::RUNNING) {
      cancelGoal();
    }
  }

  /// The ports every goal node has.
  static BT::PortsList goalPorts(const std::string & default_action)
  {
    return {
      BT::InputPort<std::string>(
        "action_name", default_action, "The node's action (namespace it "
        "like kosmos_node)."),
      BT::InputPort<std::string>(
        "camera", "", "Which camera's latest frame: an image topic of "
        "kosmos_node's image_topics; empty = its first."),
      BT::InputPort<unsigned>(
        "server_timeout_ms", 2000, "How long to wait for the action server "
        "before failing."),
    };
  }

protected:
  /// Fill the goal from the ports; return an error text to fail the node.
  virtual std::string makeGoal(Goal & goal) = 0;
  /// Set the outputs of a goal answered with success; SUCCESS or FAILURE.
  virtual BT::NodeStatus onResult(const Result & result) = 0;
  /// Hear a feedback message (the answer so far, for Ask).
  virtual void onFeedback(const Feedback &) {}

  rclcpp::Logger logger() const
  {
    return node_->get_logger().get_child("kosmos_bt");
  }

  BT::NodeStatus onStart() override
  {
    const auto action = getInput<std::string>("action_name").value_or(
      default_action_);
    if (!client_ || action != action_name_) {
      client_ = rclcpp_action::create_client<ActionT>(
        node_, action, spinner_.group());
      action_name_ = action;
    }
    const auto wait = std::chrono::milliseconds(
      getInput<unsigned>("server_timeout_ms").value_or(2000));
    if (!client_->wait_for_action_server(wait)) {
      RCLCPP_ERROR(
        logger(), "%s: no action server %s after %ld ms (is kosmos_node "
        "active?)", name().c_str(), action_name_.c_str(),
        static_cast<long>(wait.count()));
      return BT::NodeStatus::FAILURE;
    }
    Goal goal;
    goal.camera = getInput<std::string>("camera").value_or("");
    const std::string why = makeGoal(goal);
    if (!why.empty()) {
      RCLCPP_ERROR(logger(), "%s: %s", name().c_str(), why.c_str());
      return BT::NodeStatus::FAILURE;
    }
    const unsigned ticket = ++ticket_;
    typename rclcpp_action::Client<ActionT>::SendGoalOptions options;
    options.feedback_callback = [this, ticket](
      typename GoalHandle::SharedPtr, const std::shared_ptr<const Feedback> feedback) {
        if (ticket == ticket_) {
          onFeedback(*feedback);
        }
      };
    options.result_callback = [this, ticket](
      const typename GoalHandle::WrappedResult & result) {
        if (ticket == ticket_) {
          result_ = result;
          has_result_ = true;
        }
      };
    has_result_ = false;
    goal_handle_.reset();
    goal_future_ = client_->async_send_goal(goal, options);
    return BT::NodeStatus::RUNNING;
  }

  BT::NodeStatus onRunning() override
  {
    spinner_.spinSome();
    if (!goal_handle_) {
      if (goal_future_.wait_for(std::chrono::seconds(0)) !=
        std::future_status::ready)
      {
        return BT::NodeStatus::RUNNING;
      }
      goal_handle_ = goal_future_.get();
      if (!goal_handle_) {
        RCLCPP_ERROR(logger(), "%s: the goal was rejected", name().c_str());
        return BT::NodeStatus::FAILURE;
      }
    }
    if (!has_result_) {
      return BT::NodeStatus::RUNNING;
    }
    has_result_ = false;
    goal_handle_.reset();
    if (result_.code != rclcpp_action::ResultCode::SUCCEEDED) {
      RCLCPP_WARN(
        logger(), "%s: goal %s: %s", name().c_str(),
        result_.code == rclcpp_action::ResultCode::CANCELED ? "cancelled" :
        "aborted", result_.result ? result_.result->message.c_str() : "");
      return BT::NodeStatus::FAILURE;
    }
    if (!result_.result->success) {
      RCLCPP_WARN(logger(), "%s: %s", name().c_str(),
        result_.result->message.c_str());
      return BT::NodeStatus::FAILURE;
    }
    return onResult(*result_.result);
  }

  void onHalted() override
  {
    cancelGoal();
  }

private:
  /// Cancel the goal in flight, waiting (bounded) for the server to agree.
  void cancelGoal()
  {
    ++ticket_;  // what still arrives for it is ignored
    const auto wait = std::chrono::milliseconds(1000);
    if (!goal_handle_ && goal_future_.valid() &&
      spinner_.spinUntil(goal_future_, wait))
    {
      goal_handle_ = goal_future_.get();  // accepted meanwhile
    }
    goal_future_ = {};
    if (goal_handle_ && !has_result_) {
      auto cancelled = client_->async_cancel_goal(goal_handle_);
      if (spinner_.spinUntil(cancelled, wait)) {
        RCLCPP_INFO(logger(), "%s: halted; its goal is cancelled", name().c_str());
      } else {
        RCLCPP_WARN(
          logger(), "%s: halted; the cancel was not confirmed in %ld ms",
          name().c_str(), static_cast<long>(wait.count()));
      }
    }
    goal_handle_.reset();
    has_result_ = false;
  }

  rclcpp::Node::SharedPtr node_;
  Spinner spinner_;
  std::string default_action_;
  std::string action_name_;
  typename rclcpp_action::Client<ActionT>::SharedPtr client_;
  std::shared_future<typename GoalHandle::SharedPtr> goal_future_;
  typename GoalHandle::SharedPtr goal_handle_;
  typename GoalHandle::WrappedResult result_;
  bool has_result_ = false;
  unsigned ticket_ = 0;
};

}  // namespace kosmos_bt

#endif  // KOSMOS_BT__GOAL_NODE_HPP_
